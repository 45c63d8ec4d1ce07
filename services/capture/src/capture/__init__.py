"""capture"""

import echostream_shared  # noqa: F401  (one BLAS thread: set before numpy loads)
