"""Print how `modal.FilePatternMatcher` answers a matrix of patterns and paths, as JSON (run under the real
modal and under skylift's alias by test_file_pattern_parity.py)."""

import json
from pathlib import Path

from modal import FilePatternMatcher
from modal.file_pattern_matcher import NON_PYTHON_FILES

cases = [["*.py"], ["**/*.py"], ["**/*.py", "!keep.py"], ["data"], ["data/**"], ["*/tmp"], ["a?c"], ["[ab].txt"],
         ["**"], ["!x", "*"], ["/abs.txt"], ["dir/"], ["**/node_modules"], ["*.pyc", "!important.pyc"], ["a/**/b"]]
paths = ["foo.py", "pkg/a.py", "keep.py", "data", "data/x.csv", "x/tmp", "x/tmp/y", "abc", "a.txt", "c.txt",
         "x", "abs.txt", "dir/f", "web/node_modules/m.js", "important.pyc", "z.pyc", "a/b", "a/q/b", "a/q/b/c"]
out = {}
for c in cases:
    m = FilePatternMatcher(*c)
    out[" ".join(c)] = [m(Path(p)) for p in paths] + [m.can_prune_directories()]
out["NON_PYTHON"] = [NON_PYTHON_FILES(Path(p)) for p in paths]
print(json.dumps(out))
