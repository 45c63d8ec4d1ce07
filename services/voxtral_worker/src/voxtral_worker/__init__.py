"""voxtral_worker"""
