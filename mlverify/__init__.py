"""mlverify: supply-chain verification for machine-learning artifacts.

The pipeline: artifact -> manifest -> signatures and attestations -> scan
findings -> evidence -> policy decision -> report. Each stage lives under
``mlverify._internal``; this package is the public interface.
"""

from mlverify._internal.errors import MlverifyError
from mlverify._internal.version import __version__

__all__ = ["MlverifyError", "__version__"]
