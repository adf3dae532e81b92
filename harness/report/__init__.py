"""The HTML discrepancy report: merge results files (CI shards), diff two runs, render one
self-contained page.

    render(results_paths, out_path, compare=None) -> dict   # writes the page, returns counts
    merge(paths) -> Merged                                   # results, files, duplicates, problems
    diff(old_paths, new_paths, threshold_ulp=1.0) -> Diff    # .to_text(), .has_new_failures
    cross_framework(results) -> list[dict]                   # pairwise disagreement in ULPs
"""

from __future__ import annotations

from .crossfw import cross_framework
from .diffing import Change, Diff, diff
from .merge import Duplicate, FileInfo, Merged, merge
from .render import render

__all__ = ["Change", "Diff", "Duplicate", "FileInfo", "Merged", "cross_framework", "diff", "merge", "render"]
