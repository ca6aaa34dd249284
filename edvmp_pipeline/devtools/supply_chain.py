"""Supply-chain checks run by ``make test``: bandit over the package and pip-audit over the
pinned dependency set (constraints.txt).

bandit must report no medium or high finding (each waiver is a ``# nosec BXXX`` in place,
with its reason on the line above). pip-audit fails the run for a known vulnerability; when
its advisory source cannot answer (no network, or a mirror that does not serve PyPI's JSON
API), it says so, names how many packages went unaudited, and does not fail.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404 - runs the project's own venv tools with fixed arguments
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_bandit() -> int:
    """0 when bandit finds nothing of medium or high severity in the package."""
    done = subprocess.run(  # nosec B603 - fixed argument list, no shell
        [str(BIN / "bandit"), "-q", "-r", str(REPO / "edvmp_pipeline"), "-ll", "-f", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(f"bandit: could not run: {done.stderr.strip()[:300]}", file=sys.stderr)
        return 2
    findings = report.get("results", [])
    for f in findings:
        where = f"{Path(f['filename']).relative_to(REPO)}:{f['line_number']}"
        print(f"bandit: {where} {f['test_id']} {f['issue_severity']}: {f['issue_text']}")
    scanned = report.get("metrics", {}).get("_totals", {}).get("loc", 0)
    print(f"bandit: {len(findings)} medium/high findings in {scanned} lines of edvmp_pipeline")
    return 1 if findings else 0


def run_pip_audit(constraints: Path) -> int:
    """0 unless pip-audit reports a known vulnerability in a pinned package."""
    done = subprocess.run(  # nosec B603 - fixed argument list, no shell
        [str(BIN / "pip-audit"), "-r", str(constraints), "--no-deps", "--disable-pip",
         "--progress-spinner", "off", "-f", "json"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        print(f"pip-audit: advisory source not reachable, nothing audited ({reason})")
        return 0
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if d.get("skip_reason")]
    for d in vulnerable:
        ids = ", ".join(v.get("id", "?") for v in d["vulns"])
        print(f"pip-audit: {d['name']} {d.get('version', '')}: {ids}")
    audited = len(deps) - len(skipped)
    print(
        f"pip-audit: {len(deps)} pinned packages, {audited} audited, "
        f"{len(vulnerable)} with known vulnerabilities"
    )
    if skipped:
        print(
            f"pip-audit: {len(skipped)} could not be audited: the advisory source did not "
            f"answer for them (first: {skipped[0]['skip_reason']})"
        )
    return 1 if vulnerable else 0


def main() -> int:
    """Both checks; the exit code is the worse of the two."""
    return max(run_bandit(), run_pip_audit(REPO / "constraints.txt"))


if __name__ == "__main__":
    raise SystemExit(main())
