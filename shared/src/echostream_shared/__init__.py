"""EchoStream shared contracts."""
