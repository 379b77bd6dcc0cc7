"""Running one matrix cell: its venv, then the real product path on it (`python -m patcher`).

A run cell: status (pristine, the cell's own distribution), apply with verification,
check, the version's own tests (scripts/matrix_own_tests.py), revert, and every
RECORD file compared with its sha256. A transform-only cell: the same on its
unpacked wheel, without verification. Each step is recorded in the cell's result
(scripts/matrix_results.py), saved to OUT/matrix.json as soon as the cell ends.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from importlib import metadata
from pathlib import Path

import venvs
import wheels
from matrix_cells import BACKEND_PACKAGES, REPO, Cell, StepFailed, layers_option
from matrix_own_tests import OWN_TEST_TIMEOUT, own_test_files, run_pytest
from matrix_results import check_of, load_results, verification_of, verified_sets, write_json

from patcher.environment import record_entries  # RECORD's rows; no Keras import
from patcher.hashing import record_hash_to_hex, sha256_hex

PIP = ["-m", "pip", "install", "-q", "--disable-pip-version-check", "--progress-bar=off"]


class Runner:
    def __init__(self, out: Path, timeout: float, own_tests: bool) -> None:
        self.out = out
        self.timeout = timeout
        self.own_tests = own_tests
        self.lock = threading.Lock()
        self.results = load_results(out)
        self.tool = tool_revision()

    def log(self, cell: Cell, message: str) -> None:
        with self.lock:
            print(f"[{time.strftime('%H:%M:%S')}] {cell.id}: {message}", flush=True)

    def save(self, cell: Cell, result: dict) -> None:
        with self.lock:
            # Merge into what is on disk: another run may have finished cells meanwhile.
            self.results = {**load_results(self.out), cell.id: result}
            write_json(self.out, self.results)

    def run_cell(self, cell: Cell) -> dict:
        started = time.monotonic()
        result = {
            "id": cell.id,
            "distribution": cell.distribution,
            "version": cell.version,
            "backend": cell.backend,
            "generation": cell.generation,
            "kind": cell.kind,
            "steps": [],
            **({"note": cell.note} if cell.note else {}),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "tool": self.tool,
            "layer_sets": [str(layer_set) for layer_set in cell.layer_sets],
            **({"canary": True} if cell.canary else {}),
        }
        try:
            if cell.kind == "run":
                self._run(cell, result)
            else:
                self._transform_only(cell, result)
        except StepFailed as failure:
            result["outcome"] = "failed"
            result["failure"] = str(failure)
        except Exception as error:  # noqa: BLE001 - a harness bug must not stop the other cells
            result["outcome"] = "failed"
            result["failure"] = f"harness error: {type(error).__name__}: {error}"
        result["seconds"] = round(time.monotonic() - started, 1)
        outcome = result["outcome"]
        detail = f" ({result.get('failure') or result.get('reason') or ''})" if outcome != "run-verified" else ""
        self.log(cell, f"{outcome} in {result['seconds']:.0f} s{detail}")
        self.save(cell, result)
        return result

    # A run cell: the real product path on the venv itself.
    def _run(self, cell: Cell, result: dict) -> None:
        python = self.environment(cell, result)
        env = cell_env(cell)
        args = ["--python", str(python), "--only", cell.package]
        site, record = self.locate(cell, result, args, env)
        layers = layers_option(cell.layer_sets)
        try:
            # Exit 9: a check failed and apply rolled back; its reports say which (recorded).
            apply = ["apply", *args, *layers, "--json", "--timeout", str(self.timeout)]
            applied = self.cli(cell, result, "apply", apply, env, expect=(0, 9))
            document = json.loads(applied.stdout)
            result["verification"] = verification_of(document.get("verification", []))
            result["runtime"] = runtime_versions(python, env)
            if applied.returncode != 0:
                raise StepFailed(f"apply exited {applied.returncode}: {error_of(applied)}")
            if not result["verification"] or not all(report["passed"] for report in result["verification"]):
                raise StepFailed("apply did not report a passed verification")
            result["verified_sets"] = [str(layer_set) for layer_set in verified_sets(result["verification"])]
            unverified = [
                str(layer_set) for layer_set in cell.layer_sets if str(layer_set) not in result["verified_sets"]
            ]
            if unverified:
                raise StepFailed(f"apply {' '.join(layers)} verified no {unverified[0]} checks")
            # The canary's version has no pins: check exits 10 saying so (what it
            # verified then is its output, recorded); a drift is exit 1 as anywhere.
            expect = (0, 10) if cell.canary else (0,)
            result["check"] = check_of(self.cli(cell, result, "check", ["check", *args, "--json"], env, expect))
            if self.own_tests:
                self.own_test_run(cell, result, python, site, record, env)
        finally:
            # Also after a rolled-back apply (nothing to revert, exit 0): its files must be RECORD's too.
            self.cli(cell, result, "revert", ["revert", *args], env, expect=(0,))
            mismatched = record_mismatches(site, record)
            result["record_identical"] = not mismatched
        if mismatched:
            raise StepFailed(f"after revert {len(mismatched)} files differ from RECORD, e.g. {mismatched[0]}")
        own = result.get("own_tests")
        if own and own.get("new_failures"):
            raise StepFailed(f"the version's own tests fail only when patched: {own['new_failures'][:3]}")
        result["outcome"] = "run-verified"

    def _transform_only(self, cell: Cell, result: dict) -> None:
        result["reason"] = cell.reason
        archive = wheel_of(cell.distribution, cell.version)
        with tempfile.TemporaryDirectory(prefix="matrix-") as folder:
            site = Path(folder)
            wheels.extract(archive, site, wanted=set(all_package_files(archive)))
            args = ["--keras-root", str(site), "--only", cell.package]
            record = record_of(site, cell.distribution, cell.version)
            apply = ["apply", *args, *layers_option(cell.layer_sets), "--no-verify"]
            applied = self.cli(cell, result, "apply --no-verify", apply, {}, expect=(0, 4))
            if applied.returncode == 4:  # unsupported: the message is the reason users see
                result["apply_says"] = wheels.last_line(applied.stderr or applied.stdout)
                result["outcome"] = "unsupported"
                return
            self.cli(cell, result, "check", ["check", *args], {}, expect=(0,))
            self.cli(cell, result, "revert", ["revert", *args], {}, expect=(0,))
            mismatched = record_mismatches(site, record)
            result["record_identical"] = not mismatched
            if mismatched:
                raise StepFailed(f"after revert {len(mismatched)} files differ from RECORD")
        result["outcome"] = "transform-only"

    def locate(self, cell: Cell, result: dict, args: list[str], env: dict) -> tuple[Path, dict]:
        """The venv's distribution folder and RECORD; refuses anything outside the venv, another
        distribution or version than the cell's, and sets other than its pins list; pristine first."""
        status = self.cli(cell, result, "status", ["status", *args, "--json"], env, expect=(0,))
        (flavour,) = json.loads(status.stdout)["flavours"]
        site, found = Path(flavour["site"]), f"{flavour['distribution']} {flavour['version']}"
        if cell.venv.resolve() not in site.resolve().parents:
            raise StepFailed(
                f"{flavour['distribution']} found in {site}, outside the cell's venv: refusing to patch it"
            )
        if flavour["distribution"] != cell.distribution or (not cell.canary and flavour["version"] != cell.version):
            raise StepFailed(f"status found {found}, not the cell's {cell.distribution} {cell.version}")
        result["version"] = flavour["version"]  # the canary's: what pip installed today
        supported = list(flavour["layer_sets"]["supported"])
        result["supported_sets"] = supported
        if supported != [str(layer_set) for layer_set in cell.layer_sets]:
            raise StepFailed(
                f"status says {found} supports {', '.join(supported) or 'no layer set'}; the cell runs "
                f"{', '.join(map(str, cell.layer_sets))}" + ("" if cell.canary else " (its lock)")
            )
        if flavour["state"] != "pristine":  # an interrupted earlier run
            self.cli(cell, result, "revert (leftover)", ["revert", *args], env, expect=(0,))
        record = record_of(site, cell.distribution, flavour["version"])
        result["record_files"] = len(record)
        mismatched = record_mismatches(site, record)
        if mismatched:
            raise StepFailed(
                f"venv not pristine before apply: {len(mismatched)} files differ from RECORD, e.g. {mismatched[0]}"
            )
        return site, record

    def environment(self, cell: Cell, result: dict) -> Path:
        """The cell's venv python, built on first use (a marker guards half-built ones)."""
        venv = cell.venv
        python = venv / "bin" / "python"
        if venvs.is_built(venv):
            result["steps"].append({"step": "venv", "seconds": 0.0, "note": "reused"})
            self.write_sitecustomize(cell, python)
            if cell.canary:  # today's nightly, not the one the venv was built with
                self.upgrade(cell, result, python)
            return python
        self.log(cell, f"building venv {venv}")
        started = time.monotonic()
        try:
            venvs.create(venv, cell.shared_folders, base=cell.base_python())
        except venvs.VenvError as error:
            raise StepFailed(f"venv: {error}") from None
        self.write_sitecustomize(cell, python)
        pip = [str(python), *PIP]
        if cell.shared:
            run_or_fail([*pip, *BACKEND_PACKAGES[cell.backend]], "pip install (backend)", 1800)
        run_or_fail([*pip, *cell.packages, *(["pytest"] if self.own_tests else [])], "pip install", 1800)
        # pip may find the version already among the shared packages: install
        # the cell's own copy, so the product never touches the running environment.
        # (The nightly is a distribution of its own: the shared folders hold none.)
        if cell.shared and not cell.canary:
            own_copy = ["--ignore-installed", "--no-deps", f"{cell.distribution}=={cell.version}"]
            run_or_fail([*pip, *own_copy], "pip install", 900)
        if cell.after:
            run_or_fail([*pip, "--no-deps", *cell.after], "pip install", 900)
        venvs.mark_built(venv)
        seconds = round(time.monotonic() - started, 1)
        result["steps"].append({"step": "venv", "seconds": seconds, "note": "built"})
        self.log(cell, f"venv built in {seconds:.0f} s")
        return python

    def upgrade(self, cell: Cell, result: dict, python: Path) -> None:
        """The canary's newest nightly (its dependencies only where the installed ones no longer fit)."""
        self.log(cell, f"pip install --upgrade {' '.join(cell.packages)}")
        started = time.monotonic()
        run_or_fail([str(python), *PIP, "--upgrade", *cell.packages], "pip install --upgrade", 1800)
        result["steps"].append({"step": "pip upgrade", "seconds": round(time.monotonic() - started, 1)})

    @staticmethod
    def write_sitecustomize(cell: Cell, python: Path) -> None:
        """The harness shims, in the venv only (rewritten every run, so a fix reaches built venvs)."""
        if not cell.sitecustomize:
            return
        try:
            site = venvs.purelib(python).resolve()
        except venvs.VenvError as error:
            raise StepFailed(f"venv: {error}") from None
        if cell.venv.resolve() not in site.parents:
            raise StepFailed(
                f"the venv's site-packages resolved to {site}, outside {cell.venv}: not writing shims there"
            )
        (site / "sitecustomize.py").write_text(cell.sitecustomize.format(venv=cell.venv))

    def cli(
        self, cell: Cell, result: dict, step: str, argv: list[str], env: dict, expect
    ) -> subprocess.CompletedProcess:
        self.log(cell, step)
        started = time.monotonic()
        completed = subprocess.run(
            [sys.executable, "-m", "patcher", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            timeout=self.timeout + 600,
            check=False,  # the exit is the step's outcome: `expect` says which ones pass
        )
        seconds = round(time.monotonic() - started, 1)
        result["steps"].append({"step": step, "seconds": seconds, "exit": completed.returncode})
        if completed.returncode not in expect:
            raise StepFailed(f"{step} exited {completed.returncode}: {error_of(completed)}")
        return completed

    def own_test_run(self, cell: Cell, result: dict, python: Path, site: Path, record: dict, env: dict) -> None:
        tests = own_test_files(record, cell.layer_sets)
        if not tests:
            result["own_tests"] = {"shipped": False}
            return
        self.log(cell, f"own tests: {' '.join(Path(t).name for t in tests)}")
        patched = run_pytest(python, site, tests, env, OWN_TEST_TIMEOUT)
        own = {"shipped": True, "files": tests, "patched": patched["summary"], "seconds": patched["seconds"]}
        result["steps"].append({"step": "own tests", "seconds": patched["seconds"]})
        if patched["failed"]:
            # Are these failures ours? Run the same tests on the stock files.
            args = ["--python", str(python), "--only", cell.package]
            self.cli(cell, result, "revert (own-test baseline)", ["revert", *args], env, expect=(0,))
            stock = run_pytest(python, site, tests, env, OWN_TEST_TIMEOUT)
            own["stock"] = stock["summary"]
            own["new_failures"] = sorted(set(patched["failed"]) - set(stock["failed"]))
            own["failing_on_stock_too"] = sorted(set(patched["failed"]) & set(stock["failed"]))
            apply = ["apply", *args, *layers_option(cell.layer_sets), "--no-verify"]
            self.cli(cell, result, "apply (after baseline)", apply, env, expect=(0,))
        result["own_tests"] = own


def tool_revision() -> dict:
    """convlstm-patch's version and the checkout's commit (with "-dirty" when patcher/ or patches/ differ from it)."""
    from patcher import __version__

    def git(*argv: str) -> str:
        try:
            command = ["git", *argv]
            return subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short=10", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--", "patcher", "patches"))
    return {"version": __version__, "commit": commit + ("-dirty" if dirty else "")}


def run_or_fail(command: list[str], step: str, timeout: float) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        raise StepFailed(f"{step} failed: {wheels.last_line(completed.stderr or completed.stdout)}")
    return completed


def cell_env(cell: Cell) -> dict[str, str]:
    env = {"KERAS_HOME": str(cell.venv / ".keras"), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    if cell.backend in ("tensorflow", "torch", "jax", "theano"):
        env["KERAS_BACKEND"] = cell.backend
    if cell.backend == "theano":
        env["THEANO_FLAGS"] = f"blas.ldflags=-lopenblas,base_compiledir={cell.venv}/.theano"
    return env


RUNTIME_CODE = """\
import importlib, json, platform, sys
found = {"python": platform.python_version()}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.import_module(name).__version__
    except Exception:
        pass
print(json.dumps(found))
"""


def runtime_versions(python: Path, env: dict) -> dict:
    """Python's, the backend's and NumPy's versions, as the venv imports them."""
    backend = env.get("KERAS_BACKEND")
    names = [backend, "numpy"] if backend in ("tensorflow", "theano", "torch", "jax") else ["numpy"]
    command = [str(python), "-c", RUNTIME_CODE, *names]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=300, env={**os.environ, **env}, check=False
        )
        return json.loads(completed.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def record_of(site: Path, distribution: str, version: str) -> dict[str, str]:
    """RECORD path -> hex sha256, for every entry with a hash."""
    for dist in metadata.distributions(path=[str(site)]):
        if wheels.canonical(dist.metadata["Name"] or "") == distribution and dist.version == version:
            found = {}
            for entry in record_entries(dist).values():  # deleted files too: Python 3.12+'s dist.files drops them
                digest = record_hash_to_hex(entry.hash.mode, entry.hash.value) if entry.hash is not None else None
                if digest is not None:
                    found[str(entry)] = digest
            return found
    raise StepFailed(f"no {distribution} {version} dist-info in {site}")


def record_mismatches(site: Path, record: dict[str, str]) -> list[str]:
    bad = []
    for relative, expected in record.items():
        try:
            digest = sha256_hex((site / relative).read_bytes())
        except OSError:
            digest = None
        if digest != expected:
            bad.append(relative)
    return sorted(bad)


def wheel_of(distribution: str, version: str) -> Path:
    cache = wheels.cache_dir()
    have = wheels.cached(cache)
    if (distribution, version) not in have:
        failures = wheels.download([(distribution, version)], cache, jobs=1)
        if failures:
            raise StepFailed(failures[(distribution, version)])
        have = wheels.cached(cache)
    return have[(distribution, version)]


def all_package_files(archive: Path) -> list[str]:
    if not archive.name.endswith(".whl"):
        raise StepFailed(f"{archive.name}: not a wheel")
    with zipfile.ZipFile(archive) as wheel:
        return [name for name in wheel.namelist() if not name.endswith("/")]


def error_of(completed: subprocess.CompletedProcess) -> str:
    """The tool's one-line error: with --json it is in the document (stderr has none), else stderr's last line."""
    try:
        return json.loads(completed.stdout)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return wheels.last_line(completed.stderr or completed.stdout)
