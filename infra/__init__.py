"""The CDK part of the project: the stack (infra/stack.py), its typed settings (infra/config.py) and the cdk-nag
acknowledgements (infra/nag.py)."""

import sys
from pathlib import Path

# The deployment contract (table keys, environment variable names) lives in the runtime library, which infra reads
# too: functions/ is the Lambda code root, where that library is the top-level package ``pipeline``.
_FUNCTIONS = str(Path(__file__).resolve().parent.parent / "functions")
if _FUNCTIONS not in sys.path:
    sys.path.append(_FUNCTIONS)
