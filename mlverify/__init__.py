"""mlverify: supply-chain verification for machine-learning artifacts.

The pipeline: artifact -> manifest -> signatures and attestations -> scan
findings -> evidence -> policy decision -> report. Each stage lives in its own
module; this package exposes only the version and the error base class.
"""

from mlverify.errors import MlverifyError

__version__ = "0.1.0"

__all__ = ["MlverifyError", "__version__"]
