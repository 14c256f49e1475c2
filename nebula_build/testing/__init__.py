"""Test helpers for nebula-build users and plugin authors.

`NebulaTestServer` is a loopback stand-in for the Nebula image API with fault
injection; see its module for the faults it can act out.
"""

from nebula_build.testing.server import NebulaTestServer, RecordedRequest

__all__ = ["NebulaTestServer", "RecordedRequest"]
