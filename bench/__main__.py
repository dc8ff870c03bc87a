"""`make bench`: run every benchmark module in this package, one after the other (each also runs alone with
`python -m bench.<module>`)."""
import importlib
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SKIP = {"util", "__main__"}

for module in sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name not in SKIP):
    print(f"\n=== bench.{module} ===", flush=True)
    importlib.import_module(f"bench.{module}").main([])
