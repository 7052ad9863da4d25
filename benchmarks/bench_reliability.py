"""Reliability under bad input and faults: what the user sees for each of ~350 injected faults.

What is measured
----------------
In a temporary folder the script builds bad inputs and faults for the Python
API and for every ``edxtomo`` command: missing, empty (0-byte) and directory
inputs; each real vendor format of ``--data``/vendor (Bruker ``.bcf``, Velox
``.emd``, TIA ``.emi``/``.ser``) truncated at 10 sizes (5..95 %) and with 16
random bytes inverted (several seeds), and series mixing formats; wrong,
duplicate, zero, NaN and infinite tilts and the wrong number of tilts; NaN,
inf, negative, non-integer and all-zero element maps; one- and two-tilt
series; 1x1 and non-square images; unknown elements, methods, parameters,
denoisers and export formats; wrong types and ranges (``lam=nan``, ``inf``,
``-1``, ``iterations=0``, ``--max-particles -1``, huge sizes); unwritable
output folders; existing results without ``--overwrite``; an output that
would replace its input; ``edxtomo run --out D --overwrite`` interrupted with
SIGINT (to its whole process group, as Ctrl-C) at several points over an
earlier complete result in D; two runs writing to the same ``--out`` at once;
``--lazy`` on vendor files; and a lazy reconstruction under
``distributed.Client(processes=False)``.

Every case runs in a child process with a timeout (CLI: ``edxtomo ...``; API:
a small script run by ``python``), with ``NUMBA_NUM_THREADS=1`` and
``OMP_NUM_THREADS=1``, so a crash is observed rather than suffered. Inputs
(the real QD1 maps binned to 32 px, a 32 px simulated spectrum-image series,
copies of the vendor files) are hashed before and after each case.

How outcomes are classified (mechanically, first rule that applies)
--------------------------------------------------------------------
Each case states its expectation: ``bad`` (the input is wrong: the program
should refuse with a message naming one of the case's tokens, or complete
with a warning naming one) or ``ok`` (valid input: it should complete, and
the case's checks of the result must hold).

``crash``               killed by a signal (negative return code) or timed out.
``data lost``           a file that existed before (an input, an earlier complete
                        result) changed or vanished, or an interrupted/concurrent
                        run left its output folder neither entirely the old result
                        nor entirely a new one (stale files, extra files, missing
                        files, unreadable results.json).
``traceback``           CLI: "Traceback" in its output. API: it raised an internal
                        exception type (IndexError, ZeroDivisionError,
                        AttributeError, KeyError, TypeError, ...) whose message
                        names none of the case's tokens.
``clear error``         refused (CLI: non-zero exit; API: exception), and the
                        message (CLI: its last "error: " line, else its last 3
                        non-empty lines) names the file or the
                        argument (one of the tokens; regex, case-insensitive).
``unclear error``       refused, and the message names none of the tokens.
``refused valid input`` an ``ok`` case that was refused (either way).
``handled``             an ``ok`` case that completed and passed its checks, or a
                        ``bad`` case that completed with a warning or notice naming a
                        token (a line saying "warn..." or one of the 2 lines after
                        it, or a line with a word such as "no", "not", "skipped",
                        "ignored", "instead" (``NOTICE``); API: also a Python warning
                        or a logging record >= WARNING).
``silent wrong result`` a ``bad`` case that completed with no such warning, or an
                        ``ok`` case whose result failed its checks.
``unaffected``          a damaged vendor file that was read without a word, but the
                        element maps are identical to those of the intact file: the
                        damage missed the data (e.g. a cut in trailing metadata).
``skipped (root)``      unwritable-folder cases when running as root (chmod 500
                        does not stop root writing; detected by trying).
``setup failed``        a preparatory step of the case failed (not a verdict).

Ctrl-C cases (``sigint_run_*``: SIGINT to the process group at fractions of an
uninterrupted run's duration, over a complete earlier result D made by another
method): ``data lost`` if D is neither byte-identical to the old result nor a
complete new one (results.json readable with the new method, the file names of
a complete new run, no stale old file where old and new differ, no empty file);
``traceback`` if "Traceback" was printed; ``crash`` on a timeout or a signal
other than the SIGINT itself; ``silent wrong result`` if the run ignored the
Ctrl-C and reported success, or said the old result was kept while D holds the
new one; else ``handled``. Concurrent cases (two ``run`` into one ``--out``):
``data lost`` if D is neither the old result nor one complete result;
``silent wrong result`` if both report success without ``--overwrite`` (one
result silently replaced the other); else ``handled``.

Usage::

    python benchmarks/bench_reliability.py --jobs 2                # everything: ~350 cases, ~20 min on 2 cores
    python benchmarks/bench_reliability.py --only trunc_bcf --jobs 2
    python benchmarks/bench_reliability.py --json reliability.json --data ../shared/data
    python benchmarks/bench_reliability.py --list                  # the case ids only
"""

import argparse
import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reconstruction import table  # noqa: E402  (one table printer for the benchmarks)

PY = sys.executable
BIN = Path(PY).parent
EDXTOMO = str(BIN / "edxtomo") if (BIN / "edxtomo").exists() else "edxtomo"

#: exception types that betray an unhandled internal failure (unless the message names the argument)
INTERNAL = {
    "IndexError", "ZeroDivisionError", "AttributeError", "KeyError", "TypeError", "UnboundLocalError",
    "NameError", "AssertionError", "StopIteration", "RecursionError", "FloatingPointError",
    "OverflowError", "AxisError", "LinAlgError", "NotImplementedError", "UnicodeDecodeError",
    "error", "SystemError", "BrokenProcessPool",
}
CATEGORIES = (
    "crash", "data lost", "traceback", "unclear error", "refused valid input", "silent wrong result",
    "unaffected", "clear error", "handled", "skipped (root)", "setup failed",
)
BAD_CATEGORIES = ("crash", "data lost", "traceback", "unclear error", "refused valid input", "silent wrong result")

# tokens (regex, case-insensitive) that count as naming a problem
T_NAN = [r"\bnan\b", r"finite", r"not a number"]
T_INF = [r"\binf\b", r"infinit", r"finite"]
T_NEG = [r"negative", r"non-?negative", r">= ?0\b"]
T_TILT = [r"tilt"]
T_OVER = [r"overwrite", r"already"]


def child_env():
    env = dict(os.environ)
    env.update(NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLBACKEND="Agg", PYTHONWARNINGS="default", EDXTOMO_DEBUG="")
    env.pop("EDXTOMO_DEBUG")
    return env


# ------------------------------------------------------------------------------------ hashing
def hash_tree(path):
    """{relative path: sha256} of a file or of every file under a folder ({} when absent)."""
    path = Path(path)
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    out = {}
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def diff_trees(before, after):
    gone = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return gone, changed


# ------------------------------------------------------------------------------------ message tests
def _match(text, tokens):
    return any(re.search(t, text, re.IGNORECASE) for t in tokens)


def _last_lines(text, n=3):
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "DeprecationWarning: Call to deprecated" not in ln]
    return " / ".join(lines[-n:])


def _error_text(text):
    """The CLI's error line ('edxtomo CMD: error: ...', the last one), or else its last 3 lines."""
    errs = [ln.strip() for ln in text.splitlines() if re.search(r"\berror: ", ln)]
    return errs[-1] if errs else _last_lines(text)


#: a line that tells the user something went differently (a warning or a notice)
NOTICE = r"warn|\bno\b|\bnot\b|skipp|ignor|cannot|can't|instead|clipp|replac|invalid|empty|fail|only"


def _warning_text(text):
    """The notice lines of an output: lines that say 'warn...' (each with the two lines after it) or
    another word of NOTICE ('no', 'not', 'skipped', 'ignored', 'instead', ...)."""
    lines = text.splitlines()
    keep = []
    for i, ln in enumerate(lines):
        if re.search(r"warn", ln, re.IGNORECASE):
            keep.extend(lines[i:i + 3])
        elif re.search(NOTICE, ln, re.IGNORECASE):
            keep.append(ln)
    return "\n".join(keep)


# ------------------------------------------------------------------------------------ running one case
API_HARNESS = r'''
import json, logging, sys, traceback, warnings
import numpy as np
import hyperspy.api as hs
import hyperspy_edxtomo as hx
from hyperspy_edxtomo import datasets
class WrongResult(Exception):
    """raised by a case's own check of an 'ok' result"""
def check(cond, what):
    if not cond:
        raise WrongResult(what)
records = []
class _H(logging.Handler):
    def emit(self, r):
        if r.levelno >= logging.WARNING:
            records.append(f"{r.levelname}: {r.getMessage()}")
logging.getLogger().addHandler(_H())
for name in ("hyperspy_edxtomo", "hyperspy"):
    logging.getLogger(name).addHandler(_H()) if not logging.getLogger(name).propagate else None
with open(sys.argv[1]) as f:
    code = f.read()
res = {"ok": True}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        exec(compile(code, "<case>", "exec"), {"__name__": "__case__", "np": np, "hs": hs, "hx": hx,
             "datasets": datasets, "check": check, "WrongResult": WrongResult})
    except BaseException as e:
        res = {"ok": False, "type": type(e).__name__, "msg": str(e)[:2000],
               "tb": traceback.format_exc()[-3000:]}
    ws = [f"{w.category.__name__}: {w.message}" for w in caught
          if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
res["warnings"] = [str(w)[:500] for w in ws + records]
sys.stdout.flush()
print("\n@@RESULT@@" + json.dumps(res))
'''


def _run(cmd, cwd, timeout, env=None):
    """Run cmd (list) in its own process group; returns (rc or None on timeout, output text, seconds)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env or child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        rc = None
    return rc, out.decode("utf-8", "replace"), time.perf_counter() - t0


def _cmd_line(case):
    if case["iface"] == "special":
        cmds = case.get("cmds") or [case["cmd"]]
        return " & ".join(" ".join(shlex.quote(str(c)) for c in cmd) for cmd in cmds) + (
            f" (SIGINT after {case['at']} s)" if "at" in case else " (at once)")
    if case["iface"] == "api":
        return "python: " + " ; ".join(ln.strip() for ln in case["code"].strip().splitlines())
    return " ".join(shlex.quote(str(c)) for c in case.get("cmd", []))


def run_case(case):
    """Run one case in children; return its result dict (outcome, message, seconds, ...)."""
    res = {"id": case["id"], "iface": case["iface"], "command": _cmd_line(case), "expect": case["expect"]}
    t0 = time.perf_counter()
    try:
        if case.get("skip"):
            res.update(outcome=case["skip"][0], message=case["skip"][1])
        elif case["iface"] == "special":
            res.update(globals()[case["special"]](case))
        else:
            res.update(_run_plain(case))
    except Exception as e:  # a failure of this script, not of the program under test
        res.update(outcome="setup failed", message=f"benchmark error: {type(e).__name__}: {e}")
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def _run_plain(case):
    wd = Path(case["dir"])
    wd.mkdir(parents=True, exist_ok=True)
    for pre in case.get("pre", []):
        rc, out, _ = _run([str(c) for c in pre], wd, case.get("timeout", 240))
        if rc != 0:
            return dict(outcome="setup failed", message=f"pre-step rc={rc}: {_last_lines(out, 2)[:300]}")
    for prep in case.get("chmod", []):
        os.chmod(prep[0], prep[1])
    guard = [Path(g) for g in case.get("guard", [])]
    if case["iface"] == "cli":  # every existing path named on the command line is guarded too (not an
        cmd = [str(a) for a in case["cmd"]]  # --out given with --overwrite: that one may be replaced)
        free = {cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "--out"} if "--overwrite" in cmd else set()
        guard += [Path(a) for a in cmd[1:] if a.startswith("/") and Path(a).exists() and Path(a) not in guard
                  and a not in free]
    before = {str(g): hash_tree(g) for g in guard}
    if case["iface"] == "cli":
        rc, out, secs = _run([str(c) for c in case["cmd"]], wd, case.get("timeout", 180))
        exc = None
    else:
        (wd / "case.py").write_text(case["code"])
        (wd / "harness.py").write_text(API_HARNESS)
        rc, out, secs = _run([PY, str(wd / "harness.py"), str(wd / "case.py")], wd, case.get("timeout", 180))
        exc = None
        if rc is not None and "@@RESULT@@" in out:
            exc = json.loads(out.rsplit("@@RESULT@@", 1)[1].strip().splitlines()[0])
            out = out.rsplit("@@RESULT@@", 1)[0]
    for prep in case.get("chmod", []):
        os.chmod(prep[0], 0o755)
    (wd / "output.txt").write_text(out)
    after = {str(g): hash_tree(g) for g in guard}
    lost = []
    for g in before:
        gone, changed = diff_trees(before[g], after[g])
        if gone or changed:
            lost.append(f"{g}: {len(gone)} gone, {len(changed)} changed ({', '.join((gone + changed)[:3])})")
    return classify(case, rc, out, exc, lost, secs)


def classify(case, rc, out, exc, lost, secs):
    tokens = case.get("tokens", [])
    tag = f"[rc={rc}] " if case["iface"] == "cli" else ""
    if rc is None:
        return dict(outcome="crash", message=f"timeout after {case.get('timeout', 180)} s: {_last_lines(out, 2)}")
    if rc < 0:
        return dict(outcome="crash", message=f"killed by signal {-rc} ({signal.Signals(-rc).name}): "
                    f"{_last_lines(out, 2)}")
    if lost:
        return dict(outcome="data lost", message=tag + "; ".join(lost) + " | " + _last_lines(out, 2))
    if case["iface"] == "cli":
        if "Traceback" in out:
            tb = [ln for ln in out.splitlines() if ln.strip()]
            return dict(outcome="traceback", message=tag + " / ".join(tb[-2:]))
        refused, msg = rc != 0, _error_text(out)
        warned = _match(_warning_text(out), tokens)
        wmsg = _last_lines(_warning_text(out), 2)
    else:
        if exc is None:
            return dict(outcome="crash", message=f"{tag}API child ended without a result: {_last_lines(out, 3)}")
        if not exc["ok"] and exc["type"] == "WrongResult":
            return dict(outcome="silent wrong result", message=f"check failed: {exc['msg']}")
        refused = not exc["ok"]
        msg = f"{exc.get('type')}: {exc.get('msg')}" if refused else ""
        if refused and exc["type"] in INTERNAL and not _match(exc["msg"], tokens):
            return dict(outcome="traceback", message=msg)
        wtext = "\n".join(exc["warnings"]) + "\n" + _warning_text(out)
        warned = _match(wtext, tokens)
        wmsg = " / ".join(w for w in exc["warnings"] if _match(w, tokens))[:300] or " / ".join(exc["warnings"])[:300]
    if refused:
        if case["expect"] == "ok":
            return dict(outcome="refused valid input", message=tag + msg)
        return dict(outcome="clear error" if _match(msg, tokens) else "unclear error", message=tag + msg)
    if case["expect"] == "ok":
        for f in case.get("expect_files", []):
            if not Path(f).is_file() or Path(f).stat().st_size == 0:
                return dict(outcome="silent wrong result", message=f"{tag}expected output missing: {f}")
        return dict(outcome="handled", message=tag + (wmsg or f"completed in {secs:.0f} s"))
    if warned:
        return dict(outcome="handled", message=tag + "warned: " + wmsg)
    if "@@SAME_AS_INTACT@@" in out or (case.get("same_as") and _same_maps(*case["same_as"])):
        return dict(outcome="unaffected", message=tag + "completed without a word; the element maps are identical "
                    "to those of the intact file(s)")
    return dict(outcome="silent wrong result", message=tag + "completed without a warning naming "
                f"{'|'.join(tokens)}" + (f"; warnings: {wmsg}" if wmsg else ""))


COMPARE = r'''
import sys, numpy as np, hyperspy.api as hs
a, b = (np.asarray(hs.load(p).data) for p in sys.argv[1:3])
print("SAME" if a.shape == b.shape and np.array_equal(a, b) else "DIFFERENT")
'''


def _same_maps(ref, produced):
    """Whether two saved element-map files hold the same array (run in a child, like everything else)."""
    if not (Path(ref).is_file() and Path(produced).is_file()):
        return False
    rc, out, _ = _run([PY, "-c", COMPARE, str(ref), str(produced)], Path(produced).parent, 120)
    return rc == 0 and "SAME" in out.split()


# ------------------------------------------------------------------------------------ special cases
def _state_of(d, old, ref_new):
    """'old', 'new' or a description of the mix, for output folder d.

    old/ref_new: {'tree': hash_tree, 'method': str}. 'new' requires: results.json readable with the
    new method, the same file names as a complete new run, and no file still holding the old content
    where old and new differ (a stale file)."""
    now = hash_tree(d)
    if now == old["tree"]:
        return "old", now
    problems = []
    try:
        rj = json.loads((Path(d) / "results.json").read_text())
        method = _method_of(rj)
    except Exception as e:
        return f"results.json unreadable ({type(e).__name__})", now
    if set(now) != set(ref_new["tree"]):
        extra = sorted(set(now) - set(ref_new["tree"]))
        missing = sorted(set(ref_new["tree"]) - set(now))
        problems.append(f"files differ from a complete new run: extra {extra[:3]}, missing {missing[:3]}")
    if method != ref_new["method"]:
        problems.append(f"results.json method {method!r}, expected {ref_new['method']!r}")
    stale = [k for k in now if k in old["tree"] and now[k] == old["tree"][k]
             and ref_new["tree"].get(k) not in (None, old["tree"][k])]
    if stale:
        problems.append(f"stale old files: {stale[:4]}")
    empty = [k for k in now if (Path(d) / k).stat().st_size == 0]
    if empty:
        problems.append(f"empty files: {empty[:3]}")
    return ("new" if not problems else "mixed: " + "; ".join(problems)), now


def _method_of(rj):
    if isinstance(rj, dict):
        for key in ("method", "algorithm"):
            if isinstance(rj.get(key), str):
                return rj[key]
        for v in rj.values():
            if isinstance(v, dict):
                m = _method_of(v)
                if m:
                    return m
    return None


def special_sigint(case):
    """Ctrl-C (SIGINT to the process group) of `edxtomo run --overwrite` over an earlier complete run."""
    wd = Path(case["dir"])
    wd.mkdir(parents=True, exist_ok=True)
    d = wd / "out"
    shutil.copytree(case["old_dir"], d)
    old = {"tree": hash_tree(d), "method": case["old_method"]}
    ref = {"tree": json.loads(Path(case["ref_tree"]).read_text()), "method": case["new_method"]}
    cmd = [str(c) for c in case["cmd"]]
    cmd[cmd.index("OUT")] = str(d)
    p = subprocess.Popen(cmd, cwd=wd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    time.sleep(case["at"])
    ended_before = p.poll() is not None
    if not ended_before:
        os.killpg(p.pid, signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=120)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        rc = None
    out = out.decode("utf-8", "replace")
    (wd / "output.txt").write_text(out)
    state, _ = _state_of(d, old, ref)
    left = sorted(p.name for p in wd.iterdir() if p.name not in ("out", "output.txt"))
    note = (f"[rc={rc}] SIGINT at {case['at']:.1f} s{' (run had already ended)' if ended_before else ''}: "
            f"D is {state}" + (f"; left beside D: {left}" if left else ""))
    if not state.startswith(("old", "new")):
        return dict(outcome="data lost", message=note)
    if rc is None:
        return dict(outcome="crash", message=f"did not stop within 120 s after SIGINT; {note}")
    if "Traceback" in out:
        return dict(outcome="traceback", message=note + " | " + _last_lines(out, 1))
    if rc < 0 and rc != -signal.SIGINT:  # ended by the SIGINT itself (default action) is not a crash
        return dict(outcome="crash", message=f"killed by signal {-rc}; {note}")
    if state == "new" and not ended_before and rc != 0 and re.search(r"unchanged|left as|kept", out):
        return dict(outcome="silent wrong result", message=note + ": it says the earlier result was kept, but D "
                    "holds the new one | " + _last_lines(out, 1)[:80])
    if state == "new" and not ended_before and rc != 0:  # interrupted after the new result was in place
        return dict(outcome="handled", message=note + f" (the interrupt came after the new result was complete; "
                    f"exit status {rc}) | " + _last_lines(out, 1)[:80])
    if state == "new" and not ended_before and rc == 0 and re.search(r"^Wrote \d+ files to ", out, re.M):
        # the run had written and reported its results: the interrupt hit the interpreter's shut-down,
        # which ignores it (the launcher's rule), and exit 0 is the truth
        return dict(outcome="handled", message=note + " (the run had completed and said so before the interrupt "
                    "reached it) | " + _last_lines(out, 1)[:80])
    if state == "new" and not ended_before and rc == 0:
        return dict(outcome="silent wrong result", message=note + ": Ctrl-C was ignored, the run went on to the end"
                    " and reported success | " + _last_lines(out, 1)[:80])
    return dict(outcome="handled", message=note + " | " + _last_lines(out, 1)[:80])


def special_concurrent(case):
    """Two `edxtomo run` writing to the same --out at once."""
    wd = Path(case["dir"])
    wd.mkdir(parents=True, exist_ok=True)
    d = wd / "out"
    if case.get("old_dir"):
        shutil.copytree(case["old_dir"], d)
    old = {"tree": hash_tree(d), "method": case.get("old_method")}
    procs = []
    for cmd in case["cmds"]:
        cmd = [str(c) for c in cmd]
        cmd[cmd.index("OUT")] = str(d)
        procs.append(subprocess.Popen(cmd, cwd=wd, env=child_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
    rcs, outs = [], []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=case.get("timeout", 300))
            rcs.append(p.returncode)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            rcs.append(None)
        outs.append(out.decode("utf-8", "replace"))
    states = []
    for method, tree_file in case["refs"]:
        s, _ = _state_of(d, old, {"tree": json.loads(Path(tree_file).read_text()), "method": method})
        states.append((method, s))
    ok_state = [m for m, s in states if s == "new"] + (["old"] if any(s == "old" for _, s in states) and old["tree"]
                                                        else [])
    note = f"[rc={rcs}] D is " + (ok_state[0] if ok_state else "; ".join(f"vs {m}: {s}" for m, s in states))
    if not ok_state:
        return dict(outcome="data lost", message=note)
    if any(r is None or r < 0 for r in rcs):
        return dict(outcome="crash", message=note)
    if any("Traceback" in o for o in outs):
        return dict(outcome="traceback", message=note + " | " + " / ".join(_last_lines(o, 1) for o in outs))
    if not case.get("overwrite") and all(r == 0 for r in rcs):
        return dict(outcome="silent wrong result",
                    message=note + ": both runs reported success without --overwrite; one result replaced the other")
    errs = [_last_lines(o, 1) for o, r in zip(outs, rcs) if r != 0]
    return dict(outcome="handled", message=note + (" | " + errs[0][:90] if errs else ""))


# ------------------------------------------------------------------------------------ building inputs
BUILD_SCRIPT = r'''
import sys, json, numpy as np, hyperspy.api as hs
from pathlib import Path
import hyperspy_edxtomo as hx
from hyperspy_edxtomo import datasets
inp = Path(sys.argv[1])
m = datasets.qd1().rebin(scale=(1, 1, 8, 8))          # 13 tilts x 3 elements, 32 x 32 px, summed counts
m.save(inp / "qd1_32.hspy", overwrite=True)
datasets.qd1().rebin(scale=(1, 1, 4, 4)).save(inp / "qd1_64.hspy", overwrite=True)
# element, tilt, y, x from the navigation (tilt, element) layout
data = np.asarray(m.to_numpy()) if hasattr(m, "to_numpy") else np.asarray(m.data)
elements, tilts = list(m.elements), list(map(float, m.tilts))
print(json.dumps({"shape": list(data.shape), "elements": elements, "tilts": tilts}))
np.savez(inp / "qd1_32.npz", counts=data, elements=np.array(elements), tilts=np.array(tilts))
def save(counts, tilts, els, name):
    hx.element_maps_from_array(counts, tilts, els).save(inp / name, overwrite=True)
def save_values(values, name):   # same shape, other values (the constructor refuses some of them)
    mm = m.deepcopy(); mm.data = values; mm.save(inp / name, overwrite=True)
c = data.astype(np.float64)
save(data, tilts, elements, "good_from_array.hspy")
bad = c.copy(); bad[0, 3, 10:14, 10:14] = np.nan; save_values(bad, "bm_a.hspy")
bad = c.copy(); bad[0, 3, 10:14, 10:14] = np.inf; save_values(bad, "bm_b.hspy")
bad = c.copy(); bad[1, :, :8, :8] = -5; save_values(bad, "bm_c.hspy")
save_values(c * 0.37 + 0.01, "bm_d.hspy")
save_values(np.zeros_like(data), "bm_e.hspy")
m.isig[:1, :1].save(inp / "bm_f.hspy", overwrite=True)
m.isig[:24, :].save(inp / "bm_g.hspy", overwrite=True)
m.inav[6:7].save(inp / "bm_h.hspy", overwrite=True)
m.inav[5:8:2].save(inp / "bm_i.hspy", overwrite=True)
for n in ("bm_f", "bm_g", "bm_h", "bm_i", "bm_a"):
    x = hs.load(inp / (n + ".hspy")); print(n, type(x).__name__, x.data.shape, list(x.tilts), x.elements)
vol = m.reconstruct("fbp")
vol.save(inp / "volume_fbp.hspy", overwrite=True)
v = vol.deepcopy(); v.data = np.asarray(v.data, dtype=float); v.data[..., 3, 3, 3] = np.nan
v.save(inp / "vol_b.hspy", overwrite=True)
v = vol.deepcopy(); v.data = np.zeros(v.data.shape); v.save(inp / "vol_c.hspy", overwrite=True)
m.isig[:16, :16].reconstruct("fbp").save(inp / "vol_d.hspy", overwrite=True)
s = datasets.quantum_dot_tilt_series("CdSe/ZnS", size=32, seed=0)
s.save(inp / "sim_si.hspy", overwrite=True)
datasets.quantum_dot_element_maps(kind="CdSe/ZnS", size=32, seed=0).save(inp / "sim_maps.hspy", overwrite=True)
print("built")
'''


def build_inputs(tmp):
    inp = tmp / "given"  # (a neutral name: no token such as "input" in the paths)
    inp.mkdir(parents=True, exist_ok=True)
    (tmp / "build.py").write_text(BUILD_SCRIPT)
    rc, out, secs = _run([PY, str(tmp / "build.py"), str(inp)], tmp, 600)
    if rc != 0:
        raise SystemExit(f"building the inputs failed (rc={rc}):\n{out[-3000:]}")
    info = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    (inp / "empty.hspy").write_bytes(b"")
    (inp / "empty.bcf").write_bytes(b"")
    (inp / "empty.emd").write_bytes(b"")
    (inp / "empty.emi").write_bytes(b"")
    (inp / "garbage.hspy").write_bytes(os.urandom(4096))
    (inp / "notes.txt").write_text("not a spectrum image\n")
    (inp / "a_folder.hspy").mkdir(exist_ok=True)
    return inp, info, secs


def _damage(src, dst, fraction=1.0, flips=0, seed=0, skip_head=0.2):
    raw = bytearray(Path(src).read_bytes())
    raw = raw[: int(len(raw) * fraction)]
    if flips:
        import random

        rng = random.Random(seed)
        lo = int(len(raw) * skip_head)
        for i in rng.sample(range(lo, len(raw)), flips):
            raw[i] ^= 0xFF
    Path(dst).write_bytes(bytes(raw))
    return Path(dst)


def vendor_copies(vdir, dst, fmt, n):
    """n good copies of the vendor file of format fmt, named good{i}.<ext> (emi with its _1.ser)."""
    dst.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        if fmt == "emi":
            shutil.copy(vdir / VENDOR["emi"], dst / f"good{i}.emi")
            shutil.copy(vdir / VENDOR["emi"].replace(".emi", "_1.ser"), dst / f"good{i}_1.ser")
            paths.append(dst / f"good{i}.emi")
        else:
            ext = VENDOR[fmt].rsplit(".", 1)[1]
            shutil.copy(vdir / VENDOR[fmt], dst / f"good{i}_{fmt}.{ext}")
            paths.append(dst / f"good{i}_{fmt}.{ext}")
    return paths


#: appended to an API case on a damaged file: say so when its maps equal those of intact copies
SAME_CODE = (
    "m0 = hx.load_tilt_series({good!r}, tilts=[0, 10]).get_element_maps({els!r})\n"
    "a, b = (np.asarray(x.data.compute() if hasattr(x.data, 'compute') else x.data) for x in (m, m0))\n"
    "print('@@SAME_AS_INTACT@@' if a.shape == b.shape and np.array_equal(a, b) else '')\n"
)
#: --elements for each format: the TIA .emi holds a plain Signal1D (0-20 keV) with no elements
ELS = {"bcf": [], "bcf2": [], "emd": [], "emi": ["--elements", "Cu"]}
VENDOR = {"bcf": "test_TEM.bcf", "bcf2": "bcf_v2_50x50px.bcf", "emd": "Test_SI_16x16_215_kx.emd",
          "emi": "16x16-diffraction_imagel_5x5x256x256_EDS.emi"}


# ------------------------------------------------------------------------------------ the cases
def cdir(root, cid):
    """The folder of case cid: a hash, so that no path in a message spells a token (e.g. 'tilt', 'nan')."""
    return root / ("c" + hashlib.sha1(cid.encode()).hexdigest()[:10])


def build_cases(tmp, inp, info, vdir):
    cases = []
    C = tmp / "cases"
    E = EDXTOMO
    maps, sim_si, vol = inp / "qd1_32.hspy", inp / "sim_si.hspy", inp / "volume_fbp.hspy"
    FAST = ["--method", "fbp", "--no-fsc", "--quiet"]

    def add(cid, iface, expect, tokens=(), **kw):
        assert all(c["id"] != cid for c in cases), cid
        case = dict(id=cid, iface=iface, expect=expect, tokens=list(tokens), dir=str(cdir(C, cid)), **kw)
        cases.append(case)
        return case

    def cli(cid, args, expect="bad", tokens=(), **kw):
        return add(cid, "cli", expect, tokens, cmd=[E, *map(str, args)], **kw)

    def api(cid, code, expect="bad", tokens=(), **kw):
        return add(cid, "api", expect, tokens, code=code, **kw)

    def out(cid, name="out"):
        return cdir(C, cid) / name

    # root cannot be stopped by chmod 500: find out by trying
    probe = tmp / "probe_ro"
    probe.mkdir()
    os.chmod(probe, 0o500)
    try:
        (probe / "x").write_text("x")
        ro_skip = ("skipped (root)", "chmod 500 does not stop writes for this user (root): case not run")
    except PermissionError:
        ro_skip = None
    os.chmod(probe, 0o755)

    def ro_case(cid, args_fn, tokens):
        d = cdir(C, cid) / "ro"
        d.mkdir(parents=True, exist_ok=True)
        return cli(cid, args_fn(d), tokens=tokens + [re.escape(str(d)), r"permission", r"writ"],
                   chmod=[(str(d), 0o500)], skip=ro_skip)

    # -- missing / empty / wrong kind of input, every command -------------------------------------
    missing = inp / "does_not_exist.hspy"
    for cmd in ("run", "maps", "align", "denoise", "reconstruct", "analyse", "export", "train-end-to-end"):
        extra = {"export": ["--format", "npy"], "train-end-to-end": ["--out", out(f"missing_{cmd}") / "w.pt"],
                 "maps": ["--tilts", "0"]}.get(cmd, [])
        oo = [] if cmd in ("export", "train-end-to-end") else ["--out", out(f"missing_{cmd}")]
        cli(f"missing_{cmd}", [cmd, missing, *extra, *oo, "--quiet"], tokens=[re.escape(missing.name)])
        cli(f"empty_{cmd}", [cmd, inp / "empty.hspy", *extra, *oo, "--quiet"], tokens=["empty.hspy"])
    for cmd in ("run", "reconstruct", "analyse"):
        oo = ["--out", out(f"folder_{cmd}")]
        cli(f"folder_as_file_{cmd}", [cmd, inp / "a_folder.hspy", *oo, "--quiet"], tokens=["a_folder"])
        cli(f"garbage_{cmd}", [cmd, inp / "garbage.hspy", *oo, "--quiet"], tokens=["garbage.hspy"])
    cli("txt_run", ["run", inp / "notes.txt", "--out", out("txt_run"), "--quiet"], tokens=["notes.txt"])
    cli("empty_bcf_maps", ["maps", inp / "empty.bcf", "--tilts", "0", "--out", out("empty_bcf_maps"), "--quiet"],
        tokens=["empty.bcf"])
    cli("empty_emd_run", ["run", inp / "empty.emd", "--tilts", "0", "--out", out("empty_emd_run"), *FAST],
        tokens=["empty.emd"])
    cli("empty_emi_maps", ["maps", inp / "empty.emi", "--tilts", "0", "--out", out("empty_emi_maps"), "--quiet"],
        tokens=["empty.emi"])
    cli("glob_matches_nothing", ["maps", str(inp / "nothing_*.bcf"), "--out", out("glob_matches_nothing")],
        tokens=[r"nothing_\*", "match"])
    api("missing_api_load", f"hx.load_tilt_series([{str(missing)!r}], tilts=[0])", tokens=[missing.name])
    api("empty_api_load", f"hx.load_tilt_series([{str(inp / 'empty.bcf')!r}], tilts=[0])", tokens=["empty.bcf"])
    api("empty_list_api_load", "hx.load_tilt_series([], tilts=[])", tokens=[r"no files", r"empty", r"paths", "file"])
    api("missing_api_pipeline", f"from hyperspy_edxtomo.workflow.pipeline import run_pipeline\n"
        f"run_pipeline({str(missing)!r}, out={str(out('missing_api_pipeline'))!r}, method='fbp', fsc=False)",
        tokens=[missing.name])

    # -- vendor files: truncated, byte-flipped, mixed, tilts, lazy ------------------------------
    have_vendor = vdir is not None
    if have_vendor:
        V = inp / "vendor"
        ext = {"bcf": "bcf", "bcf2": "bcf", "emd": "emd", "emi": "emi"}
        good = {f: vendor_copies(vdir, V, f, 3) for f in VENDOR}
        refs = tmp / "refs"  # element maps of the intact copies, to tell damage that missed the data
        for fmt in VENDOR:
            _run([E, "maps", *map(str, good[fmt]), "--tilts", "-10", "0", "10", *ELS[fmt], "--out",
                  str(refs / f"maps_{fmt}"), "--quiet"], tmp, 300)
        fracs = [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95]
        for fmt in VENDOR:
            for fr in fracs:
                name = f"cut{int(fr * 100):02d}_{fmt}"
                if fmt == "emi":  # the spectra are in the .ser; cut that
                    bad = V / f"{name}.emi"
                    shutil.copy(vdir / VENDOR["emi"], bad)
                    _damage(vdir / VENDOR["emi"].replace(".emi", "_1.ser"), V / f"{name}_1.ser", fraction=fr)
                    toks = [name]
                else:
                    bad = _damage(vdir / VENDOR[fmt], V / f"{name}.{ext[fmt]}", fraction=fr)
                    toks = [name]
                cid = f"trunc_{fmt}_{int(fr * 100):02d}"
                if fmt == "bcf" and fr in (0.25, 0.65, 0.95):  # also the lazy reader, through the API
                    api(cid + "_api_lazy", f"s = hx.load_tilt_series([{str(good[fmt][0])!r}, {str(bad)!r}], "
                        f"tilts=[0, 10], lazy=True)\nm = s.get_element_maps()\nm.compute() if hasattr(m, 'compute') "
                        f"else None\n" + SAME_CODE.format(good=[str(good[fmt][0]), str(good[fmt][1])], els=None),
                        tokens=toks)
                cli(cid, ["maps", good[fmt][0], good[fmt][1], bad, "--tilts", -10, 0, 10, *ELS[fmt], "--out",
                          out(cid), "--quiet"], tokens=toks, timeout=180,
                    same_as=(str(refs / f"maps_{fmt}" / "element_maps.hspy"), str(out(cid) / "element_maps.hspy")))
        for fmt, n_seeds in (("bcf", 3), ("bcf2", 2), ("emd", 3), ("emi", 2)):
            for seed in range(n_seeds):
                name = f"flip{seed}_{fmt}"
                if fmt == "emi":
                    bad = V / f"{name}.emi"
                    shutil.copy(vdir / VENDOR["emi"], bad)
                    _damage(vdir / VENDOR["emi"].replace(".emi", "_1.ser"), V / f"{name}_1.ser", flips=16, seed=seed)
                else:
                    bad = _damage(vdir / VENDOR[fmt], V / f"{name}.{ext[fmt]}", flips=16, seed=seed)
                cid = f"flip_{fmt}_s{seed}"
                if seed == 0:
                    api(cid + "_api", f"s = hx.load_tilt_series([{str(good[fmt][0])!r}, {str(bad)!r}], tilts=[0, 10])"
                        f"\nm = s.get_element_maps({ELS[fmt][1:]!r})\n"
                        + SAME_CODE.format(good=[str(good[fmt][0]), str(good[fmt][1])], els=ELS[fmt][1:] or None),
                        tokens=[name])
                    cli(cid + "_run", ["run", good[fmt][0], good[fmt][1], bad, "--tilts", -10, 0, 10, *ELS[fmt], "--out",
                                       out(cid + "_run"), *FAST], tokens=[name], timeout=240,
                        same_as=(str(refs / f"maps_{fmt}" / "element_maps.hspy"),
                                 str(out(cid + "_run") / "element_maps.hspy")))
                cli(cid, ["maps", good[fmt][0], good[fmt][1], bad, "--tilts", -10, 0, 10, *ELS[fmt], "--out",
                          out(cid), "--quiet"], tokens=[name], timeout=180,
                    same_as=(str(refs / f"maps_{fmt}" / "element_maps.hspy"), str(out(cid) / "element_maps.hspy")))
        # flipped header bytes (the first 20 %) of the bcf
        for seed in range(2):
            bad = _damage(vdir / VENDOR["bcf"], V / f"hflip{seed}_bcf.bcf", flips=16, seed=seed, skip_head=0.0)
            cli(f"flip_header_bcf_s{seed}", ["maps", good["bcf"][0], bad, "--tilts", 0, 10, "--out",
                                              out(f"flip_header_bcf_s{seed}"), "--quiet"], tokens=[bad.name])
        b, e, i = good["bcf"][0], good["emd"][0], good["emi"][0]
        cli("mixed_bcf_emd", ["maps", b, e, "--tilts", 0, 10, "--out", out("mixed_bcf_emd"), "--quiet"],
            tokens=[b.name, e.name, "format", "mix", "element", "differ"])
        cli("mixed_bcf_emi_run", ["run", b, i, "--tilts", 0, 10, "--out", out("mixed_bcf_emi_run"), *FAST],
            tokens=[b.name, i.name, "format", "mix", "element", "differ"])
        cli("mixed_bcf_bcf2", ["maps", b, good["bcf2"][0], "--tilts", 0, 10, "--out", out("mixed_bcf_bcf2"),
                               "--quiet"], tokens=[b.name, good["bcf2"][0].name, "shape", "size", "differ", "mix"])
        cli("mixed_vendor_hspy", ["maps", b, maps, "--tilts", 0, 10, "--out", out("mixed_vendor_hspy"), "--quiet"],
            tokens=[b.name, maps.name, "format", "mix"])
        api("mixed_api", f"hx.load_tilt_series([{str(b)!r}, {str(e)!r}, {str(i)!r}], tilts=[0, 10, 20])"
            f".get_element_maps()", tokens=[b.name, e.name, i.name, "format", "mix", "element", "differ"])
        three = list(good["bcf"])
        tilt_cases = {
            "tilts_too_few": ([0, 10], T_TILT),
            "tilts_too_many": ([0, 10, 20, 30], T_TILT),
            "tilts_duplicate": ([0, 0, 10], T_TILT + ["duplicate", "same", "distinct", "unique"]),
            "tilts_all_zero": ([0, 0, 0], T_TILT + ["duplicate", "same", "distinct", "unique"]),
            "tilts_nan": (["nan", 0, 10], T_TILT + T_NAN),
            "tilts_inf": (["inf", 0, 10], T_TILT + T_INF),
            "tilts_out_of_range": ([-200, 0, 200], T_TILT + ["range", "90", "180"]),
            "tilts_word": (["abc", 0, 10], T_TILT),
        }
        for cid, (tilts, toks) in tilt_cases.items():
            cli(cid + "_maps", ["maps", *three, "--tilts", *tilts, "--out", out(cid + "_maps"), "--quiet"],
                tokens=toks)
        for cid in ("tilts_too_few", "tilts_duplicate", "tilts_nan", "tilts_out_of_range"):
            tilts, toks = tilt_cases[cid]
            cli(cid + "_run", ["run", *three, "--tilts", *tilts, "--out", out(cid + "_run"), *FAST], tokens=toks,
                timeout=240)
        cli("tilts_none_given_maps", ["maps", *three, "--out", out("tilts_none_given_maps"), "--quiet"],
            tokens=T_TILT)  # the copies share one stage tilt
        cli("unknown_element_maps", ["maps", *three, "--tilts", -10, 0, 10, "--elements", "Cu", "Xx", "--out",
                                     out("unknown_element_maps"), "--quiet"], tokens=[r"\bXx\b"])
        cli("element_without_lines_maps", ["maps", *three, "--tilts", -10, 0, 10, "--elements", "H", "--out",
                                           out("element_without_lines_maps"), "--quiet"],
            tokens=[r"\bH\b", "no counts", "energy", "range", "line"])
        cli("element_duplicate_maps", ["maps", *three, "--tilts", -10, 0, 10, "--elements", "Cu", "Cu", "--out",
                                       out("element_duplicate_maps"), "--quiet"], tokens=[r"\bCu\b", "repeat",
                                                                                          "duplicate"])
        for fmt in ("bcf", "emd", "emi"):
            cli(f"lazy_{fmt}_maps", ["maps", *good[fmt], "--tilts", -10, 0, 10, *ELS[fmt], "--lazy", "--out",
                                     out(f"lazy_{fmt}_maps"), "--quiet"], expect="ok",
                expect_files=[out(f"lazy_{fmt}_maps") / "element_maps.hspy"], timeout=240)
        cli("lazy_bcf_run", ["run", *three, "--tilts", -10, 0, 10, "--lazy", "--out", out("lazy_bcf_run"),
                             "--elements", "Cu", "Pd", *FAST], expect="ok",
            expect_files=[out("lazy_bcf_run") / "results.json"], timeout=300)
        api("lazy_bcf_api", f"s = hx.load_tilt_series({[str(p) for p in three]!r}, tilts=[-10, 0, 10], lazy=True)\n"
            "m = s.get_element_maps(['Cu', 'Pd'])\nv = m.reconstruct('fbp')\n"
            "d = np.asarray(v.data.compute() if hasattr(v.data, 'compute') else v.data)\n"
            "check(np.isfinite(d).all() and d.any(), 'volume all zero or not finite')", expect="ok", timeout=240)
        cli("vendor_existing_no_overwrite", ["maps", *three, "--tilts", -10, 0, 10, "--out",
                                             out("vendor_existing_no_overwrite"), "--quiet"],
            pre=[[E, "maps", *three, "--tilts", -10, 0, 10, "--elements", "Cu", "--out",
                  out("vendor_existing_no_overwrite"), "--quiet"]],
            guard=[out("vendor_existing_no_overwrite")], tokens=T_OVER)
        cli("vendor_input_inside_out", ["run", *three, "--tilts", -10, 0, 10, "--out", V, "--overwrite", *FAST],
            tokens=["inside", "input", re.escape(str(V))], guard=[V])
        cli("maps_existing_no_overwrite", ["maps", *three, "--tilts", -10, 0, 10, "--out",
                                           out("maps_existing_no_overwrite"), "--quiet"],
            pre=[[E, "maps", *three, "--tilts", -10, 0, 10, "--out", out("maps_existing_no_overwrite"), "--quiet"]],
            guard=[out("maps_existing_no_overwrite")], tokens=T_OVER)
        ro_case("unwritable_maps_vendor", lambda d: ["maps", *three, "--tilts", -10, 0, 10, "--out", d / "x", "--quiet"],
                [])

    # -- element maps with bad values, through every command that takes maps ---------------------
    badmaps = {
        "nan": ("bm_a.hspy", T_NAN), "inf": ("bm_b.hspy", T_INF), "negative": ("bm_c.hspy", T_NEG),
        "float": ("bm_d.hspy", [r"count", r"integer"]), "zero": ("bm_e.hspy", [r"zero", r"empty",
                                                                                           r"no counts", r"no signal"]),
        "1x1": ("bm_f.hspy", [r"1 ?x ?1", r"small", r"pixel", r"size"]),
        "1tilt": ("bm_h.hspy", T_TILT + ["view"]), "2tilt": ("bm_i.hspy", T_TILT + ["view"]),
    }
    for key, (fname, toks) in badmaps.items():
        f = inp / fname
        # Maps that are not counts are valid input since issue 14 (its "a strength for any maps" and "bad
        # input: negative values from background subtraction: a clear message or documented handling"):
        # non-integer maps (here counts x 0.37 + 0.01: a scale and an offset, not counts) and negative
        # values (background subtracted with negative='keep') go through sirt, fbp, the alignment, the
        # pipeline's FSC (even and odd tilts) and two_step as they are; tv's automatic choice, which
        # would use the Poisson model on counts, says that they are not counts (a 'bad' case: handled when
        # it says so). Each 'ok' case checks the files written, not only that something ran.
        ok = dict(expect="ok") if key in ("float", "negative") else {}
        cli(f"maps_{key}_reconstruct", ["reconstruct", f, "--method", "sirt", "--param", "iterations=10",
                                        "--out", out(f"maps_{key}_reconstruct"), "--quiet"], tokens=toks, **ok,
            **(dict(expect_files=[out(f"maps_{key}_reconstruct") / "volume_sirt.hspy"]) if ok else {}))
        cli(f"maps_{key}_run", ["run", f, "--out", out(f"maps_{key}_run"), *FAST], tokens=toks, timeout=240, **ok,
            **(dict(expect_files=[out(f"maps_{key}_run") / "results.json"]) if ok else {}))
        cli(f"maps_{key}_align", ["align", f, "--out", out(f"maps_{key}_align"), "--quiet"], tokens=toks, **ok,
            **(dict(expect_files=[out(f"maps_{key}_align") / "element_maps_aligned.hspy"]) if ok else {}))
        api(f"maps_{key}_api_tv", f"m = hs.load({str(f)!r})\nv = m.reconstruct('tv')", tokens=toks)
        if key in ("nan", "inf", "negative", "1x1"):
            cli(f"maps_{key}_denoise", ["denoise", f, "--out", out(f"maps_{key}_denoise"), "--quiet"], tokens=toks)
    cli("maps_float_run_fsc", ["run", inp / "bm_d.hspy", "--method", "fbp", "--quiet", "--out",
                               out("maps_float_run_fsc")], expect="ok", timeout=300,
        expect_files=[out("maps_float_run_fsc") / "fsc.hspy"])
    cli("maps_float_two_step", ["reconstruct", inp / "bm_d.hspy", "--method", "two_step", "--quiet", "--out",
                                out("maps_float_two_step")], expect="ok", timeout=300,
        expect_files=[out("maps_float_two_step") / "volume_two_step.hspy"])
    cli("maps_sim_si_ok", ["maps", sim_si, "--out", out("maps_sim_si_ok"), "--quiet"], expect="ok",
        expect_files=[out("maps_sim_si_ok") / "element_maps.hspy"])
    cli("maps_nonsquare_run", ["run", inp / "bm_g.hspy", "--out", out("maps_nonsquare_run"), *FAST],
        expect="ok", expect_files=[out("maps_nonsquare_run") / "results.json"], timeout=240)
    api("maps_nonsquare_api", f"m = hs.load({str(inp / 'bm_g.hspy')!r})\nv = m.reconstruct('sirt', "
        "iterations=10)\ncheck(np.isfinite(np.asarray(v.data)).all(), 'not finite')", expect="ok")
    cli("maps_good_from_array_align", ["align", inp / "good_from_array.hspy", "--out",
                                       out("maps_good_from_array_align"), "--quiet"], expect="ok",
        expect_files=[out("maps_good_from_array_align") / "element_maps_aligned.hspy"])

    # -- element_maps_from_array: the Python constructor ------------------------------------------
    pre = f"d = np.load({str(inp / 'qd1_32.npz')!r})\nc, els, t = d['counts'], list(d['elements']), list(d['tilts'])\n"
    fa = {
        "tilts_duplicate": ("t2 = list(t); t2[1] = t2[0]\nm = hx.element_maps_from_array(c, t2, els)\n"
                            "m.reconstruct('fbp')", T_TILT + ["duplicate", "same", "unique", "distinct"]),
        "tilts_nan": ("t2 = list(t); t2[0] = float('nan')\nm = hx.element_maps_from_array(c, t2, els)\n"
                      "m.reconstruct('fbp')", T_TILT + T_NAN),
        "tilts_inf": ("t2 = list(t); t2[0] = float('inf')\nm = hx.element_maps_from_array(c, t2, els)\n"
                      "m.reconstruct('fbp')", T_TILT + T_INF),
        "tilts_all_zero": ("m = hx.element_maps_from_array(c, [0.0] * len(t), els)\nm.reconstruct('fbp')",
                           T_TILT + ["duplicate", "same", "unique", "distinct"]),
        "tilts_wrong_count": ("m = hx.element_maps_from_array(c, t[:5], els)", T_TILT),
        "tilts_too_many": ("m = hx.element_maps_from_array(c, t + [70.0], els)", T_TILT),
        "tilts_out_of_range": ("m = hx.element_maps_from_array(c, [x * 4 for x in t], els)\nm.reconstruct('fbp')",
                               T_TILT + ["range", "90", "180"]),
        "tilts_string": ("m = hx.element_maps_from_array(c, 'abc', els)", T_TILT),
        "tilts_unsorted": ("import random\nidx = list(range(len(t))); random.Random(0).shuffle(idx)\n"
                           "m = hx.element_maps_from_array(c[:, idx], [t[i] for i in idx], els)\n"
                           "v = m.reconstruct('fbp')\nref = hx.element_maps_from_array(c, t, els).reconstruct('fbp')\n"
                           "check(np.allclose(np.asarray(v.data), np.asarray(ref.data), atol=1e-4 * "
                           "float(np.abs(np.asarray(ref.data)).max())), 'shuffled views give another volume')",
                           []),
        "elements_unknown": ("m = hx.element_maps_from_array(c, t, ['Se', 'S', 'Xx'])", [r"\bXx\b"]),
        "elements_count": ("m = hx.element_maps_from_array(c, t, ['Se', 'S'])", [r"element"]),
        "elements_duplicate": ("m = hx.element_maps_from_array(c, t, ['Se', 'Se', 'Zn'])\nm.reconstruct('fbp')",
                               [r"element", r"duplicate", r"\bSe\b"]),
        "counts_3d": ("m = hx.element_maps_from_array(c[0], t, els)", [r"counts", r"dimension", r"shape", r"ndim"]),
        "counts_5d": ("m = hx.element_maps_from_array(c[None], t, els)", [r"counts", r"dimension", r"shape",
                                                                          r"ndim"]),
        "counts_no_tilts": ("m = hx.element_maps_from_array(c[:, :0], [], els)\nm.reconstruct('fbp')",
                            T_TILT + [r"empty", r"view"]),
        "counts_no_pixels": ("m = hx.element_maps_from_array(c[:, :, :0, :0], t, els)\nm.reconstruct('fbp')",
                             [r"empty", r"pixel", r"size", r"shape"]),
        "counts_strings": ("m = hx.element_maps_from_array(np.full(c.shape, 'a'), t, els)", [r"counts", r"numeric",
                                                                                             r"dtype", r"number"]),
        "counts_complex": ("m = hx.element_maps_from_array(c + 1j, t, els)\nm.reconstruct('fbp')",
                           [r"counts", r"complex", r"dtype", r"real"]),
        "counts_nan": ("c2 = c.astype(float); c2[0, 0, 0, 0] = np.nan\nm = hx.element_maps_from_array(c2, t, els)\n"
                       "m.reconstruct('fbp')", T_NAN),
        "counts_negative": ("c2 = c.astype(float); c2[1, :, :4, :4] = -3\n"
                            "m = hx.element_maps_from_array(c2, t, els)\nm.reconstruct('tv')", T_NEG),
        "counts_1x1": ("m = hx.element_maps_from_array(c[:, :, :1, :1], t, els)\nm.reconstruct('sirt', "
                       "iterations=10)", [r"1 ?x ?1", r"small", r"pixel", r"size"]),
        "counts_1tilt": ("m = hx.element_maps_from_array(c[:, 6:7], t[6:7], els)\nm.reconstruct('sirt', "
                         "iterations=10)", T_TILT + ["view"]),
        "counts_2tilt_tv": ("m = hx.element_maps_from_array(c[:, 5:8:2], t[5:8:2], els)\nm.reconstruct('tv')",
                            T_TILT + ["view"]),
        "pixel_size_negative": ("m = hx.element_maps_from_array(c, t, els, pixel_size_nm=-1)",
                                [r"pixel.?size", r"scale"]),
        "pixel_size_zero": ("m = hx.element_maps_from_array(c, t, els, pixel_size_nm=0)", [r"pixel.?size", r"scale"]),
        "pixel_size_nan": ("m = hx.element_maps_from_array(c, t, els, pixel_size_nm=float('nan'))",
                           [r"pixel.?size", r"scale"]),
        "tilt_axis_unknown": ("m = hx.element_maps_from_array(c, t, els, tilt_axis='diagonal')", [r"tilt.?axis",
                                                                                                  r"diagonal"]),
        "background_wrong_shape": ("m = hx.element_maps_from_array(c, t, els, background=np.ones((2, 3)))\n"
                                   "m.reconstruct('tv')", [r"background"]),
        "background_negative": ("m = hx.element_maps_from_array(c, t, els, background=-np.ones(c.shape))\n"
                                "m.reconstruct('tv')", [r"background"] + T_NEG),
    }
    for key, (code, toks) in fa.items():
        api(f"from_array_{key}", pre + code, expect="ok" if not toks else "bad", tokens=toks)

    # -- reconstruct: methods, parameters, types, ranges ------------------------------------------
    params = {
        "lam_nan": (["tv", "lam=nan"], [r"\blam\b"]), "lam_inf": (["tv", "lam=inf"], [r"\blam\b"]),
        "lam_negative": (["tv", "lam=-1"], [r"\blam\b"]), "lam_word": (["tv", "lam=abc"], [r"\blam\b"]),
        "iterations_zero": (["sirt", "iterations=0"], [r"iterations"]),
        "iterations_negative": (["sirt", "iterations=-5"], [r"iterations"]),
        "iterations_float": (["sirt", "iterations=2.5"], [r"iterations"]),
        "iterations_word": (["sirt", "iterations=ten"], [r"iterations"]),
        "iterations_huge": (["sirt", "iterations=1000000000000"], [r"iterations"]),
        "unknown_param": (["sirt", "bogus=1"], [r"bogus"]),
        "param_no_equals": (["sirt", "iterations"], [r"iterations", r"NAME=VALUE", r"--param", r"="]),
        "param_empty_name": (["sirt", "=3"], [r"--param", r"NAME=VALUE", r"=3"]),
        "fbp_with_lam": (["fbp", "lam=3"], [r"\blam\b"]),
        "two_step_bad_denoiser": (["two_step", "denoiser=nope"], [r"nope", r"denoiser"]),
    }
    for key, ((method, p), toks) in params.items():
        cli(f"reconstruct_{key}", ["reconstruct", maps, "--method", method, "--param", p, "--out",
                                   out(f"reconstruct_{key}"), "--quiet"], tokens=toks, timeout=120)
    for key in ("lam_nan", "lam_inf", "lam_negative", "iterations_zero", "unknown_param"):
        (method, p), toks = params[key]
        name, val = p.split("=")
        val = {"nan": "float('nan')", "inf": "float('inf')"}.get(val, val)
        api(f"api_reconstruct_{key}", f"m = hs.load({str(maps)!r})\nv = m.reconstruct({method!r}, {name}={val})",
            tokens=toks, timeout=120)
    for key in ("lam_nan", "lam_negative", "iterations_zero", "unknown_param"):
        (method, p), toks = params[key]
        cli(f"run_{key}", ["run", maps, "--method", method, "--param", p, "--no-fsc", "--quiet", "--out",
                           out(f"run_{key}")], tokens=toks, timeout=240)
    cli("reconstruct_unknown_method", ["reconstruct", maps, "--method", "magic", "--out",
                                       out("reconstruct_unknown_method")], tokens=["magic"])
    cli("reconstruct_method_case", ["reconstruct", maps, "--method", "FBP", "--out",
                                    out("reconstruct_method_case"), "--quiet"], tokens=["FBP", "method"])
    cli("reconstruct_weights_missing", ["reconstruct", maps, "--method", "end_to_end", "--weights",
                                        inp / "no_weights.pt", "--out", out("reconstruct_weights_missing")],
        tokens=["no_weights.pt"])
    cli("reconstruct_weights_garbage", ["reconstruct", maps, "--method", "end_to_end", "--weights",
                                        inp / "garbage.hspy", "--out", out("reconstruct_weights_garbage")],
        tokens=["garbage.hspy", "weights"])
    cli("reconstruct_a_volume", ["reconstruct", vol, "--method", "fbp", "--out", out("reconstruct_a_volume")],
        tokens=[vol.name, "element map", "volume"])
    cli("reconstruct_a_spectrum_image", ["reconstruct", sim_si, "--method", "fbp", "--out",
                                         out("reconstruct_a_spectrum_image"), "--quiet"],
        tokens=[sim_si.name, "element map", "spectr"])
    api("api_reconstruct_unknown_method", f"m = hs.load({str(maps)!r})\nm.reconstruct('magic')", tokens=["magic"])
    api("api_reconstruct_method_int", f"m = hs.load({str(maps)!r})\nm.reconstruct(5)", tokens=["method", r"\b5\b"])
    api("api_reconstruct_lam_string", f"m = hs.load({str(maps)!r})\nm.reconstruct('tv', lam='abc')",
        tokens=[r"\blam\b"])
    api("api_reconstruct_iterations_none", f"m = hs.load({str(maps)!r})\nm.reconstruct('sirt', iterations=None)\n",
        tokens=["iterations"])
    api("api_reconstruct_sirt_ok", f"m = hs.load({str(maps)!r})\nv = m.reconstruct('sirt', iterations=10)\n"
        "d = np.asarray(v.data)\ncheck(np.isfinite(d).all() and d.max() > 0, 'empty or non-finite volume')",
        expect="ok")

    # -- align / denoise ------------------------------------------------------------------------
    cli("align_unknown_method", ["align", maps, "--method", "magic", "--out", out("align_unknown_method")],
        tokens=["magic"])
    cli("align_rotation_nan", ["align", maps, "--rotation", "nan", "--out", out("align_rotation_nan"), "--quiet"],
        tokens=["rotation"] + T_NAN)
    cli("align_rotation_word", ["align", maps, "--rotation", "abc", "--out", out("align_rotation_word")],
        tokens=["rotation"])
    cli("align_rotation_huge", ["align", maps, "--rotation", "1e300", "--out", out("align_rotation_huge"),
                                "--quiet"], tokens=["rotation"])
    cli("align_a_volume", ["align", vol, "--out", out("align_a_volume")], tokens=[vol.name, "element map", "volume"])
    cli("align_a_spectrum_image", ["align", sim_si, "--out", out("align_a_spectrum_image"), "--quiet"],
        tokens=[sim_si.name, "element map", "spectr"])
    api("api_align_unknown_method", f"m = hs.load({str(maps)!r})\nm.align('magic')", tokens=["magic"])
    api("api_align_unknown_kwarg", f"m = hs.load({str(maps)!r})\nm.align('xcorr', bogus=3)", tokens=["bogus"])
    cli("denoise_unknown_method", ["denoise", maps, "--method", "magic", "--out", out("denoise_unknown_method")],
        tokens=["magic"])
    cli("denoise_unknown_param", ["denoise", maps, "--method", "gaussian", "--param", "bogus=1", "--out",
                                  out("denoise_unknown_param")], tokens=["bogus"])
    cli("denoise_sigma_negative", ["denoise", maps, "--method", "gaussian", "--param", "sigma=-1", "--out",
                                   out("denoise_sigma_negative"), "--quiet"], tokens=["sigma"])
    cli("denoise_sigma_nan", ["denoise", maps, "--method", "gaussian", "--param", "sigma=nan", "--out",
                              out("denoise_sigma_nan"), "--quiet"], tokens=["sigma"])
    cli("denoise_a_volume", ["denoise", vol, "--out", out("denoise_a_volume"), "--quiet"],
        tokens=[vol.name, "element map", "volume"])
    api("api_denoise_unknown", f"m = hs.load({str(maps)!r})\nm.denoise('magic')", tokens=["magic"])

    # -- run: options ---------------------------------------------------------------------------
    run_opts = {
        "unknown_element": (["--elements", "Xx"], [r"\bXx\b"]),
        "element_lowercase": (["--elements", "se"], [r"\bse\b"]),
        "element_not_in_maps": (["--elements", "Cu"], [r"\bCu\b"]),
        "unknown_method": (["--method", "magic"], ["magic"]),
        "unknown_denoiser": (["--denoiser", "magic"], ["magic"]),
        "denoiser_bad_param": (["--denoiser", "gaussian", "--denoiser-param", "bogus=2"], ["bogus"]),
        "unknown_align_method": (["--align-method", "magic"], ["magic"]),
        "unknown_fsc_method": (["--fsc-method", "magic", "--method", "fbp"], ["magic"]),
        "fsc_param_bad": (["--fsc-method", "sirt", "--fsc-param", "iterations=-3", "--method", "fbp"],
                          ["iterations"]),
        "unknown_export": (["--export", "xyz"], ["xyz"]),
        "unknown_shell_element": (["--shell-elements", "Xx"], [r"\bXx\b"]),
        "shell_element_absent": (["--shell-elements", "Cu"], [r"\bCu\b"]),
        "seed_word": (["--seed", "abc"], ["seed"]),
        "seed_negative": (["--seed", "-1", "--method", "fbp"], ["seed"]),
        "tilts_on_hspy_wrong_count": (["--tilts", "0", "10"], T_TILT),
        "tilts_empty_option": (["--tilts"], T_TILT),
        "both_background_flags": (["--no-background", "--subtract-background"], ["background"]),
        "unknown_option": (["--frobnicate"], ["frobnicate"]),
    }
    for key, (opts, toks) in run_opts.items():
        base = ["--no-fsc", "--quiet"] + ([] if "--method" in opts else ["--method", "fbp"])
        if key.startswith(("unknown_fsc", "fsc_param")):
            base = ["--quiet"]
        cli(f"run_{key}", ["run", maps, *opts, *base, "--out", out(f"run_{key}")], tokens=toks, timeout=240)
    cli("run_sim_si_ok", ["run", sim_si, "--elements", "Se", "Zn", "S", "--out", out("run_sim_si_ok"),
                          "--method", "sirt", "--param", "iterations=10", "--no-fsc", "--quiet"], expect="ok",
        expect_files=[out("run_sim_si_ok") / "results.json", out("run_sim_si_ok") / "volume.hspy"], timeout=300)
    cli("run_existing_no_overwrite", ["run", maps, *FAST, "--out", out("run_existing_no_overwrite")],
        pre=[[E, "run", maps, *FAST, "--out", out("run_existing_no_overwrite")]],
        guard=[out("run_existing_no_overwrite")], tokens=T_OVER, timeout=240)
    cli("run_out_is_a_file", ["run", maps, *FAST, "--out", inp / "notes.txt"], tokens=["notes.txt"],
        guard=[inp / "notes.txt"])
    # output == input: the input sits in --out, which run would replace
    ii = cdir(C, "run_input_inside_out") / "work"
    cli("run_input_inside_out", ["run", ii / "qd1_32.hspy", *FAST, "--out", ii, "--overwrite"],
        pre=[["mkdir", "-p", ii], ["cp", maps, ii]], guard=[ii], tokens=["inside", "input", re.escape(str(ii))])
    api("api_pipeline_input_inside_out", f"import shutil, os\nos.makedirs('w', exist_ok=True)\n"
        f"shutil.copy({str(maps)!r}, 'w/qd1_32.hspy')\nfrom hyperspy_edxtomo.workflow.pipeline import run_pipeline\n"
        "try:\n    run_pipeline('w/qd1_32.hspy', out='w', method='fbp', fsc=False, overwrite=True, verbose=False)\n"
        "finally:\n    check(os.path.exists('w/qd1_32.hspy'), 'the input qd1_32.hspy was deleted')\n",
        tokens=["inside", "input", "qd1_32"])
    api("api_pipeline_unknown_export", f"from hyperspy_edxtomo.workflow.pipeline import run_pipeline\n"
        f"run_pipeline({str(maps)!r}, out='o', method='fbp', fsc=False, exports=('xyz',), verbose=False)",
        tokens=["xyz"])
    api("api_pipeline_export_string", f"from hyperspy_edxtomo.workflow.pipeline import run_pipeline\n"
        f"run_pipeline({str(maps)!r}, out='o', method='fbp', fsc=False, exports='mrc', verbose=False)\n"
        "import os\ncheck(sorted(os.listdir('o')) and not any(f.endswith(('.m', '.r', '.c')) for f in os.listdir('o'))"
        ", 'exports=\"mrc\" split into letters')", tokens=["export"])
    api("api_pipeline_parameters_not_dict", f"from hyperspy_edxtomo.workflow.pipeline import run_pipeline\n"
        f"run_pipeline({str(maps)!r}, out='o', method='sirt', parameters=['iterations', 10], fsc=False, "
        "verbose=False)", tokens=["parameters"])
    ro_case("unwritable_run", lambda d: ["run", maps, *FAST, "--out", d / "x"], [])

    # -- two-step outputs over existing ones and outputs == inputs --------------------------------
    def step_chain(cid):
        return cdir(C, cid) / "work"

    w = step_chain("align_output_is_input")
    cli("align_output_is_input", ["align", w / "element_maps_aligned.hspy", "--out", w, "--overwrite", "--quiet"],
        pre=[["mkdir", "-p", w], [E, "align", maps, "--out", w, "--quiet"]], tokens=["input", "overwrite", "replace",
                                                                                     "same"])
    w = step_chain("denoise_output_is_input")
    cli("denoise_output_is_input", ["denoise", w / "element_maps_denoised_gaussian.hspy", "--method", "gaussian",
                                    "--out", w, "--overwrite", "--quiet"],
        pre=[["mkdir", "-p", w], [E, "denoise", maps, "--method", "gaussian", "--out", w, "--quiet"]],
        tokens=["input", "overwrite", "replace", "same"])
    w = step_chain("reconstruct_output_is_input")
    cli("reconstruct_output_is_input", ["reconstruct", w / "volume_fbp.hspy", "--method", "fbp", "--out", w,
                                        "--overwrite", "--quiet"],
        pre=[["mkdir", "-p", w], ["cp", maps, w / "volume_fbp.hspy"]], tokens=["input", "overwrite", "replace",
                                                                               "same"])
    w = step_chain("export_output_is_input")
    cli("export_output_is_input", ["export", w / "volume_fbp.hspy", "--format", "hspy", "--out", w, "--overwrite"],
        pre=[["mkdir", "-p", w], ["cp", vol, w]], tokens=["input", "overwrite", "replace", "same"])
    w = step_chain("maps_output_is_input")
    cli("maps_output_is_input", ["maps", w / "element_maps.hspy", "--out", w, "--overwrite", "--quiet"],
        pre=[["mkdir", "-p", w], ["cp", sim_si, w / "element_maps.hspy"]], tokens=["input", "overwrite", "replace",
                                                                                   "same"])
    for cmd, args, produced in (
            ("align", [maps], "element_maps_aligned.hspy"),
            ("denoise", [maps, "--method", "gaussian"], "element_maps_denoised_gaussian.hspy"),
            ("reconstruct", [maps, "--method", "fbp"], "volume_fbp.hspy"),
            ("analyse", [vol], None),
            ("export", [vol, "--format", "npy"], None)):
        cid = f"{cmd}_existing_no_overwrite"
        d = out(cid)
        cli(cid, [cmd, *args, "--out", d, "--quiet"], pre=[[E, cmd, *args, "--out", d, "--quiet"]], guard=[d],
            tokens=T_OVER)
        ro_case(f"unwritable_{cmd}", lambda dd, cmd=cmd, args=args: [cmd, *args, "--out", dd / "x", "--quiet"], [])
    cli("reconstruct_out_is_a_file", ["reconstruct", maps, "--method", "fbp", "--out", inp / "notes.txt"],
        tokens=["notes.txt"], guard=[inp / "notes.txt"])
    cli("align_overwrite_ok", ["align", maps, "--out", out("align_overwrite_ok"), "--overwrite", "--quiet"],
        pre=[[E, "align", maps, "--method", "com", "--out", out("align_overwrite_ok"), "--quiet"]], expect="ok",
        expect_files=[out("align_overwrite_ok") / "element_maps_aligned.hspy"])

    # -- analyse / export -----------------------------------------------------------------------
    an = {
        "max_particles_negative": (["--max-particles", "-1"], ["max.particles"]),
        "max_particles_zero": (["--max-particles", "0"], ["max.particles"]),
        "max_particles_word": (["--max-particles", "many"], ["max.particles"]),
        "unknown_shell_element": (["--shell-elements", "Xx"], [r"\bXx\b"]),
        "half2_missing": (["--half2", inp / "no_half.hspy"], ["no_half.hspy"]),
        "half2_other_shape": (["--half2", inp / "vol_d.hspy"], ["vol_d", "half2", "shape"]),
        "half2_is_maps": (["--half2", maps], [maps.name, "half2", "volume"]),
    }
    for key, (opts, toks) in an.items():
        cli(f"analyse_{key}", ["analyse", vol, *opts, "--out", out(f"analyse_{key}"), "--quiet"], tokens=toks,
            timeout=180)
    cli("analyse_max_particles_huge", ["analyse", vol, "--max-particles", "1000000000", "--out",
                                       out("analyse_max_particles_huge"), "--quiet"], expect="ok",
        expect_files=[out("analyse_max_particles_huge") / "report.html"], timeout=180)
    cli("analyse_nan_volume", ["analyse", inp / "vol_b.hspy", "--out", out("analyse_nan_volume"), "--quiet"],
        tokens=T_NAN)
    cli("analyse_zero_volume", ["analyse", inp / "vol_c.hspy", "--out", out("analyse_zero_volume"), "--quiet"],
        tokens=["zero", "empty", "no particle", "particle"])
    cli("analyse_maps_not_volume", ["analyse", maps, "--out", out("analyse_maps_not_volume"), "--quiet"],
        tokens=[maps.name, "volume"])
    cli("analyse_si_not_volume", ["analyse", sim_si, "--out", out("analyse_si_not_volume"), "--quiet"],
        tokens=[sim_si.name, "volume"])
    api("api_analyse_max_particles_negative", f"v = hs.load({str(vol)!r})\nimport hyperspy_edxtomo.analysis as a\n"
        "fn = getattr(v, 'analyse', None) or getattr(v, 'find_particles', None)\n"
        "check(fn is not None, 'no analyse/find_particles method on ElementVolume')\nfn(max_particles=-1)",
        tokens=["max.particles"])
    ex = {
        "unknown_format": (["--format", "xyz"], ["xyz"]),
        "unknown_element": (["--format", "npy", "--element", "Xx"], [r"\bXx\b"]),
        "name_with_slash": (["--format", "npy", "--name", "../../escaped"], ["name", "escaped"]),
        "maps_not_volume": (["--format", "mrc"], ["volume", maps.name]),
    }
    for key, (opts, toks) in ex.items():
        src = maps if key == "maps_not_volume" else vol
        cli(f"export_{key}", ["export", src, *opts, "--out", out(f"export_{key}")], tokens=toks)
    cli("export_all_formats_ok", ["export", vol, "--format", "mrc", "tif", "vti", "npy", "zspy", "--out",
                                  out("export_all_formats_ok")], expect="ok",
        expect_files=[out("export_all_formats_ok") / "volume_fbp.vti"])
    ro_case("unwritable_export_default_out", lambda d: ["export", vol, "--format", "npy", "--out", d], [])

    # -- demo, algorithms, denoisers, train-end-to-end, argument errors ---------------------------
    demo = {
        "size_zero": (["--size", "0"], ["size"]), "size_negative": (["--size", "-5"], ["size"]),
        "size_one": (["--size", "1"], ["size"]), "size_huge": (["--size", "1000000"], ["size", "memory"]),
        "size_word": (["--size", "big"], ["size"]), "kind_unknown": (["--kind", "GaAs"], ["GaAs", "kind"]),
        "method_unknown": (["--method", "magic"], ["magic"]), "lam_nan": (["--param", "lam=nan"], [r"\blam\b"]),
        "export_unknown": (["--export", "xyz"], ["xyz"]), "real_size_huge": (["--real", "--size", "4096"],
                                                                              ["--size", r"\bsize\b"]),
        "out_is_a_file": (["--out", inp / "notes.txt"], ["notes.txt"]),
    }
    for key, (opts, toks) in demo.items():
        base = ["--no-fsc", "--quiet"] + ([] if "--method" in opts else ["--method", "fbp"])
        if "--size" not in opts:
            base += ["--size", "32"]
        oo = [] if "--out" in opts else ["--out", out(f"demo_{key}")]
        cli(f"demo_{key}", ["demo", *opts, *base, *oo], tokens=toks, timeout=240,
            guard=[inp / "notes.txt"] if key == "out_is_a_file" else [])
    cli("demo_ok", ["demo", "--size", "32", "--method", "fbp", "--no-fsc", "--quiet", "--out", out("demo_ok")],
        expect="ok", expect_files=[out("demo_ok") / "volume.hspy"], timeout=300)
    cli("demo_over_user_file", ["demo", "--size", "32", "--method", "fbp", "--no-fsc", "--quiet", "--out",
                                out("demo_over_user_file", "d")],
        pre=[["mkdir", "-p", out("demo_over_user_file", "d")], ["cp", maps, out("demo_over_user_file", "d") /
                                                                "my_maps.hspy"]],
        guard=[out("demo_over_user_file", "d") / "my_maps.hspy"], expect="ok",
        expect_files=[out("demo_over_user_file", "d") / "volume.hspy"], timeout=300)
    cli("algorithms_ok", ["algorithms"], expect="ok")
    cli("denoisers_ok", ["denoisers"], expect="ok")
    cli("algorithms_extra_arg", ["algorithms", "foo"], tokens=["foo", "unrecognized"])
    cli("denoisers_bad_option", ["denoisers", "--bogus"], tokens=["bogus"])
    cli("unknown_command", ["reconstrct", maps], tokens=["reconstrct", "choice"])
    cli("no_command", [], tokens=["command", "usage"])
    te = cdir(C, "train_bad") / "w.pt"
    cli("train_unknown_param", ["train-end-to-end", maps, "--out", te, "--param", "bogus=1"], tokens=["bogus"])
    cli("train_steps_zero", ["train-end-to-end", maps, "--out", cdir(C, "train_steps_zero") / "w.pt", "--param",
                             "steps=0"], tokens=["steps"], timeout=240)
    cli("train_mixed_elements", ["train-end-to-end", maps, inp / "sim_maps.hspy", "--out",
                                 cdir(C, "train_mixed") / "w.pt", "--param", "steps=1"],
        tokens=["element", "sim_maps", maps.name], timeout=240)
    cli("train_out_is_input", ["train-end-to-end", cdir(C, "train_out_is_input") / "m.hspy", "--out",
                               cdir(C, "train_out_is_input") / "m.hspy", "--overwrite", "--param", "steps=1"],
        pre=[["mkdir", "-p", cdir(C, "train_out_is_input")], ["cp", maps, cdir(C, "train_out_is_input") / "m.hspy"]],
        tokens=["input", "same", "overwrite", "replace"], timeout=240)

    # -- huge sizes through the API (refuse quickly instead of exhausting memory) -----------------
    api("api_simulate_huge", "datasets.quantum_dot_tilt_series('CdSe/ZnS', size=10**6, seed=0)",
        tokens=["size", "memory"], timeout=120, rlimit_gb=8)
    api("api_from_array_huge_broadcast", pre + "m = hx.element_maps_from_array(np.broadcast_to(c[:, :, :1, :1], "
        "(c.shape[0], c.shape[1], 40000, 40000)), t, els)\nm.reconstruct('fbp')", tokens=["size", "memory", "large"],
        timeout=120, rlimit_gb=8)

    # -- distributed ----------------------------------------------------------------------------
    try:
        import importlib.util

        has_dist = importlib.util.find_spec("distributed") is not None
    except Exception:
        has_dist = False
    if has_dist:
        api("distributed_lazy_reconstruct", "from distributed import Client\n"
            "client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)\n"
            f"try:\n    m = hs.load({str(maps)!r}, lazy=True)\n    v = m.reconstruct('sirt', iterations=10)\n"
            "    d = v.data.compute() if hasattr(v.data, 'compute') else np.asarray(v.data)\n"
            f"    ref = np.asarray(hs.load({str(maps)!r}).reconstruct('sirt', iterations=10).data)\n"
            "    check(np.allclose(d, ref, rtol=1e-3, atol=1e-3 * abs(ref).max()), 'lazy volume differs from eager')\n"
            "finally:\n    client.close()", expect="ok", timeout=240)
        api("distributed_lazy_tv", "from distributed import Client\n"
            "client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)\n"
            f"try:\n    m = hs.load({str(maps)!r}, lazy=True)\n    v = m.reconstruct('tv', lam=1)\n"
            "    d = v.data.compute() if hasattr(v.data, 'compute') else np.asarray(v.data)\n"
            "    check(np.isfinite(d).all() and d.max() > 0, 'empty or non-finite volume')\n"
            "finally:\n    client.close()", expect="ok", timeout=240)
    return cases


#: when the SIGINT is sent, as fractions of the uninterrupted run's duration
SIGINT_AT = (0.05, 0.1, 0.15, 0.25, 0.4, 0.55, 0.7, 0.85, 0.95, 0.99, 1.1, 1.25, 1.5, 1.8, 2.2)


def build_special_cases(tmp, inp, cases, only):
    """SIGINT and concurrent-run cases: need one complete old run and complete reference new runs."""
    C = tmp / "cases"
    maps64, maps = inp / "qd1_64.hspy", inp / "qd1_32.hspy"
    ids = ["sigint_run_%02d" % int(f * 100) for f in SIGINT_AT]
    ids += ["concurrent_run_no_overwrite", "concurrent_run_overwrite"]
    if only and not any(only in i for i in ids):
        return
    refs = tmp / "refs"
    refs.mkdir(exist_ok=True)
    old_cmd = [EDXTOMO, "run", maps64, "--method", "fbp", "--no-fsc", "--quiet", "--out"]
    new_args = ["--method", "sirt", "--param", "iterations=10", "--no-fsc", "--quiet"]
    trees = {}
    t_new = None
    for name, cmd in (("old_fbp", old_cmd), ("new_sirt", [EDXTOMO, "run", maps64, *new_args, "--out"]),
                      ("c_fbp", [EDXTOMO, "run", maps, "--method", "fbp", "--no-fsc", "--quiet", "--out"]),
                      ("c_sirt", [EDXTOMO, "run", maps, *new_args, "--out"])):
        rc, o, secs = _run([str(c) for c in cmd] + [str(refs / name)], tmp, 600)
        if rc != 0:
            print(f"reference run {name} failed (rc={rc}): {_last_lines(o)}; SIGINT/concurrent cases skipped")
            return
        trees[name] = refs / f"{name}.tree.json"
        trees[name].write_text(json.dumps(hash_tree(refs / name)))
        if name == "new_sirt":
            t_new = secs
    print(f"reference runs done: the interrupted run takes {t_new:.1f} s when not interrupted")
    for f in SIGINT_AT:
        cid = "sigint_run_%02d" % int(f * 100)
        cases.append(dict(id=cid, iface="special", special="special_sigint", expect="ok", dir=str(cdir(C, cid)),
                          old_dir=str(refs / "old_fbp"), old_method="fbp", new_method="sirt",
                          ref_tree=str(trees["new_sirt"]), at=round(f * t_new, 2),
                          cmd=[EDXTOMO, "run", maps64, *map(str, new_args), "--out", "OUT", "--overwrite"]))
    a = [EDXTOMO, "run", str(maps), "--method", "fbp", "--no-fsc", "--quiet", "--out", "OUT"]
    b = [EDXTOMO, "run", str(maps), *new_args, "--out", "OUT"]
    refs_c = [("fbp", str(trees["c_fbp"])), ("sirt", str(trees["c_sirt"]))]
    cases.append(dict(id="concurrent_run_no_overwrite", iface="special", special="special_concurrent", expect="ok",
                      dir=str(cdir(C, "concurrent_run_no_overwrite")), cmds=[a, b], refs=refs_c, overwrite=False))
    cases.append(dict(id="concurrent_run_overwrite", iface="special", special="special_concurrent", expect="ok",
                      dir=str(cdir(C, "concurrent_run_overwrite")), cmds=[a + ["--overwrite"], b + ["--overwrite"]],
                      refs=refs_c, overwrite=True, old_dir=str(refs / "c_fbp"), old_method="fbp"))


# ------------------------------------------------------------------------------------ main
def _apply_rlimit(case):
    """Huge-size cases run under an address-space limit (so a runaway allocation cannot take the machine)."""
    if case.get("rlimit_gb") and case["iface"] == "api":
        gb = case["rlimit_gb"]
        case["code"] = (f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({gb} << 30, {gb} << 30))\n"
                        + case["code"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"),
                    help="folder holding vendor/ (default: ../shared/data beside the checkout)")
    ap.add_argument("--jobs", type=int, default=1, help="cases run at once (process pool)")
    ap.add_argument("--only", help="run only the cases whose id contains this substring")
    ap.add_argument("--json", help="write every case and its result to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    ap.add_argument("--list", action="store_true", help="list the case ids and exit")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="edxtomo_reliability_"))
    vdir = Path(args.data) / "vendor"
    if not all((vdir / f).is_file() for f in VENDOR.values()):
        print(f"vendor files absent in {vdir.resolve()}: the vendor-file cases (truncated, byte-flipped, mixed "
              "formats, vendor tilts, --lazy on vendor files) are skipped")
        vdir = None
    try:
        print(f"building inputs in {tmp} ...", flush=True)
        inp, info, secs = build_inputs(tmp)
        print(f"inputs built in {secs:.0f} s (maps {info['shape']}, elements {info['elements']})", flush=True)
        cases = build_cases(tmp, inp, info, vdir)
        if args.list:
            print("\n".join(c["id"] for c in cases) + "\nsigint_run_* concurrent_run_* (special)")
            return 0
        if args.only:
            cases = [c for c in cases if args.only in c["id"]]
        build_special_cases(tmp, inp, cases, args.only)
        if args.only:
            cases = [c for c in cases if args.only in c["id"]]
        for c in cases:
            _apply_rlimit(c)
        print(f"{len(cases)} cases, {args.jobs} at a time", flush=True)
        results = []
        if args.jobs <= 1:
            for i, c in enumerate(cases):
                results.append(run_case(c))
                r = results[-1]
                print(f"[{i + 1}/{len(cases)}] {r['id']}: {r['outcome']} ({r['seconds']} s)", flush=True)
        else:
            # the heaviest (special, run) cases first so the pool does not end on one long case
            order = sorted(cases, key=lambda c: (c["iface"] != "special", "run" not in c["id"]))
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
                futs = {pool.submit(run_case, c): c for c in order}
                for i, fut in enumerate(cf.as_completed(futs)):
                    r = fut.result()
                    results.append(r)
                    print(f"[{i + 1}/{len(cases)}] {r['id']}: {r['outcome']} ({r['seconds']} s)", flush=True)
        for r in results:  # shorter messages: the temporary folder as $TMP
            r["message"] = r["message"].replace(str(tmp), "$TMP")
            r["command"] = r["command"].replace(str(tmp), "$TMP").replace(EDXTOMO, "edxtomo")
        by_id = {c["id"]: i for i, c in enumerate(cases)}
        results.sort(key=lambda r: by_id[r["id"]])
        total = time.perf_counter() - t0
        counts = {k: sum(r["outcome"] == k for r in results) for k in CATEGORIES}
        table("Summary", ["outcome", "cases"], [[k, v] for k, v in counts.items() if v] + [["total", len(results)]])
        table("Cases", ["id", "interface", "outcome", "message"],
              [[r["id"], r["iface"], r["outcome"], r["message"].replace("\n", " ")[:100]] for r in results])
        bad = [r for r in results if r["outcome"] in BAD_CATEGORIES]
        if bad:
            print("\n## Failures (crash, data lost, traceback, unclear error, refused valid input, silent wrong result)")
            for r in bad:
                print(f"\n- {r['id']} [{r['outcome']}]\n  command: {r['command'][:400]}\n  message: {r['message'][:400]}")
        print(f"\ntotal time {total:.0f} s ({len(results)} cases, --jobs {args.jobs})")
        if args.json:
            Path(args.json).write_text(json.dumps({"total_seconds": round(total, 1), "summary": counts,
                                                   "results": results}, indent=1))
            print(f"results written to {args.json}")
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            for p in tmp.rglob("*"):
                if p.is_dir() and not p.is_symlink():
                    try:
                        os.chmod(p, 0o755)
                    except OSError:
                        pass
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
