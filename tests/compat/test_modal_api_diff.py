"""Modal's public API (the pinned real package, in a venv of its own) diffed against skylift's through
`import modal`: fails on any regression, a name, parameter, exception base or CLI command/option that
the committed baseline says skylift has and it no longer has. Prints what is still missing.

The first run installs `modal` into the cache (SKYLIFT_COMPAT_CACHE, default ~/.cache/skylift-compat;
about a minute); later runs take a few seconds. Without the package index the test is skipped."""

from __future__ import annotations

import json
import subprocess

import pytest
from modal_api_report import (
    BASELINE,
    CATEGORIES,
    DELIBERATE,
    MODAL_VERSION,
    counts,
    deliberate,
    missing,
    reference,
    skylift_dump,
)


@pytest.mark.timeout(900)
def test_no_regression_against_the_committed_modal_api_baseline() -> None:
    try:
        ref = reference()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"can't install modal=={MODAL_VERSION} into the compat cache (no package index?): "
                    f"{(exc.stderr or '')[-500:]}")
    ours = skylift_dump(ref)
    baseline = json.loads(BASELINE.read_text())
    assert baseline["modal_version"] == MODAL_VERSION
    lost = sorted(k for k in baseline["present"] if k in ref and k not in ours)
    still = missing(ref, ours)
    summary = "; ".join(f"{CATEGORIES[c]} {have}/{total}" for c, (have, total) in counts(ref, ours).items())
    print(f"\nskylift against modal {MODAL_VERSION}: {summary}; {len(still)} still missing "
          f"(docs/modal-api-report.md), e.g. {', '.join(still[:15])}")
    assert not lost, f"{len(lost)} Modal API entries skylift had are gone: {lost}"
    gained = sorted(k for k in ref if k in ours and not deliberate(k) and k not in baseline["present"])
    if gained:
        print(f"{len(gained)} entries are new since the baseline; run `python tests/compat/modal_api_report.py` "
              f"to record them: {gained[:20]}")


def test_deliberate_differences_name_real_modal_api() -> None:
    try:
        ref = reference()
    except subprocess.CalledProcessError:
        pytest.skip(f"can't install modal=={MODAL_VERSION}")
    assert not [k for k in DELIBERATE if k not in ref]
