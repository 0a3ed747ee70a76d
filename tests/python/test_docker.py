"""The Docker image, emulated without Docker (no daemon where these tests run;
``scripts/docker_smoke.sh`` builds and runs the real image where one is).

* The Dockerfile is parsed: the final stage runs as a numeric non-root uid
  (the one ``useradd`` creates), its HEALTHCHECK asks ``/health``, its
  ENTRYPOINT runs ``bitnet_py.server`` on the EXPOSEd port, and the
  default CMD names a mounted model.
* The image is emulated: the build context (the tracked files less
  ``.dockerignore``) is copied, the wheel is built from it exactly as the
  build stage does (``pip wheel --no-deps --wheel-dir DIR .``), and it is
  installed into a fresh venv with only the packages the final stage's
  ``pip install`` names. In that venv, from outside the repository, with the
  final stage's ENV, the ENTRYPOINT + CMD is started on a free loopback
  port (the shipped small model mounted as the CMD's model path), the
  HEALTHCHECK command itself is run, and ``/v1/completions`` answers.
  Where the test runs as root and the base interpreter is readable by
  others, the server runs as the image's uid too.

One wheel build (a few minutes on two cores); it runs with the rest of
tests/python (``scripts/test.sh``) and needs the package index (PyPI or a
pip cache) for scikit-build-core, numpy, fastapi and uvicorn.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
SHIPPED_MODEL = REPO / "python" / "bitnet_py" / "data" / "bitnet-b1.58-small-i2_s.gguf"


# -- the Dockerfile --------------------------------------------------------------

def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    cur = ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def final_stage(text: str) -> list[tuple[str, str]]:
    ins = instructions(text)
    starts = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    assert starts, "no FROM"
    return ins[starts[-1]:]


def build_stage(text: str) -> list[tuple[str, str]]:
    ins = instructions(text)
    starts = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    assert len(starts) >= 2, "expected a build stage and a final stage"
    return ins[starts[-2]:starts[-1]]


def exec_form(args: str) -> list[str]:
    v = json.loads(args)
    assert isinstance(v, list) and all(isinstance(x, str) for x in v), args
    return list(v)


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for w, a in stage:
        if w == "ENV":
            for tok in shlex.split(a):
                k, sep, v = tok.partition("=")
                assert sep, f"ENV in the legacy 'ENV k v' form: {a}"
                env[k] = v
    return env


def pip_install_args(stage: list[tuple[str, str]]) -> list[str]:
    """The requirement arguments of the stage's ``pip install``."""
    for w, a in stage:
        if w == "RUN" and "pip install" in a:
            words = shlex.split(a.split("pip install", 1)[1].split("&&", 1)[0])
            return [x for x in words if not x.startswith("-")]
    raise AssertionError("the final stage installs nothing with pip")


def option(argv: list[str], name: str) -> Optional[str]:
    return argv[argv.index(name) + 1] if name in argv else None


def test_dockerfile_contract() -> None:
    text = DOCKERFILE.read_text()
    fin = final_stage(text)
    words = [w for w, _ in fin]
    users = [a for w, a in fin if w == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER must be a numeric non-root uid (Kubernetes runAsNonRoot): {user}"
    created = re.search(r"useradd\b[^&]*--uid\s+(\d+)", text)
    assert created and created.group(1) == user, "USER is not the uid useradd creates"
    assert words.index("USER") > max(i for i, (w, a) in enumerate(fin) if w == "RUN"), \
        "RUN after USER would need root"
    hc = [a for w, a in fin if w == "HEALTHCHECK"]
    assert len(hc) == 1 and "CMD" in hc[0] and "/health" in hc[0]
    entry = exec_form(next(a for w, a in fin if w == "ENTRYPOINT"))
    assert entry[:3] == ["python", "-m", "bitnet_py.server"], entry
    exposed = [int(p.split("/")[0]) for w, a in fin if w == "EXPOSE" for p in a.split()]
    port = option(entry, "--port")
    assert port is not None and exposed == [int(port)], (exposed, entry)
    assert f"127.0.0.1:{port}/health" in hc[0], "the health check must ask the port the server listens on"
    assert option(entry, "--host") == "0.0.0.0"
    cmd = exec_form(next(a for w, a in fin if w == "CMD"))
    model = option(cmd, "--model")
    assert model is not None and model.startswith("/models/"), cmd
    # the build stage builds the wheel the final stage installs
    build = build_stage(text)
    assert any(w == "RUN" and "pip wheel --no-deps --wheel-dir /wheels ." in a for w, a in build)
    assert any(w == "COPY" and a.startswith("--from=") and "/wheels" in a for w, a in fin)
    ignore = (REPO / ".dockerignore").read_text().split()
    assert {".git", "build", "build-*", "tests", "python/bitnet_py/data/*.gguf"} <= set(ignore)


# -- the build context -------------------------------------------------------------

def _pattern_regex(p: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif p.startswith("**", i):
            out += ".*"
            i += 2
        elif p[i] == "*":
            out += "[^/]*"
            i += 1
        elif p[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(p[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_filter(lines: list[str]) -> Any:
    """A predicate: is a context path excluded? (Docker's rules: patterns are
    relative to the context root, a match on a directory excludes what is
    under it, ``!`` re-includes, the last matching pattern wins.)"""
    rules = []
    for line in lines:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        neg = s.startswith("!")
        s = s[1:] if neg else s
        rules.append((neg, _pattern_regex(os.path.normpath(s).lstrip("/"))))

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        verdict = False
        for neg, rx in rules:
            if any(rx.match(p) for p in prefixes):
                verdict = not neg
        return verdict

    return excluded


def test_dockerignore_matcher() -> None:
    ex = dockerignore_filter([".git", "build-*", "**/__pycache__", "python/bitnet_py/data/*.gguf", "tests",
                              "docs/*.md", "!docs/keep.md"])
    assert ex("build-asan/x.o") and ex("tests/python/test_x.py") and ex("python/bitnet_py/__pycache__/a.pyc")
    assert ex("python/bitnet_py/data/m.gguf") and not ex("python/bitnet_py/data/__init__.py")
    assert not ex("build.txt") and not ex("src/build-x.c") and not ex("testsuite/a")
    assert ex("docs/a.md") and not ex("docs/keep.md") and not ex("docs/sub/a.md")


def build_context(dst: Path) -> list[str]:
    """Copy what ``COPY . .`` would see of a clean checkout: the tracked
    files, less .dockerignore."""
    r = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    files = [f for f in r.stdout.decode().split("\0") if f]
    excluded = dockerignore_filter((REPO / ".dockerignore").read_text().splitlines())
    kept = []
    for f in files:
        src = REPO / f
        if excluded(f) or not src.is_file():
            continue
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / f)
        kept.append(f)
    return kept


# -- the emulated image ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a process in the image: nothing from this
    checkout's Python setup (PYTHONPATH, editable-install switches)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "SKBUILD", "VIRTUAL_ENV", "BITNET_"))}
    env.update(extra)
    return env


def world_readable_interpreter() -> bool:
    """Can another uid run this interpreter (every directory up to its
    prefix traversable by others)?"""
    for base in (Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent):
        p = base
        while True:
            if not p.stat().st_mode & 0o001:
                return False
            if p.parent == p:
                break
            p = p.parent
    return True


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the build context is the tracked files")
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"{SHIPPED_MODEL} not found")
    text = DOCKERFILE.read_text()
    fin = final_stage(text)
    # a directory others can read, so the server can run as the image's uid
    base = Path(tempfile.mkdtemp(prefix="bitnet-image-"))
    os.chmod(base, 0o755)
    try:
        ctx = base / "src"
        ctx.mkdir()
        kept = build_context(ctx)
        assert "pyproject.toml" in kept and not any(k.startswith("tests/") for k in kept)
        wheels = base / "wheels"
        env = clean_env({})
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), "."],
                           cwd=ctx, capture_output=True, text=True, timeout=1500, env=env)
        assert r.returncode == 0, "wheel build failed:\n" + r.stdout[-4000:] + r.stderr[-4000:]
        built = sorted(wheels.glob("*.whl"))
        assert len(built) == 1, built
        shutil.rmtree(ctx)  # the final stage has no sources, only the wheel
        venv = base / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=300)
        py = venv / "bin" / "python"
        reqs = [str(built[0]) if x.startswith("/wheels/") else x for x in pip_install_args(fin)]
        assert str(built[0]) in reqs
        r = subprocess.run([str(py), "-m", "pip", "install", "--no-input", *reqs], capture_output=True, text=True,
                           timeout=900, env=env)
        assert r.returncode == 0, "pip install in the venv failed:\n" + r.stdout[-3000:] + r.stderr[-3000:]
        models = base / "models"
        models.mkdir()
        yield {"base": base, "py": py, "wheel": built[0], "models": models, "stage": fin}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_wheel_installed_not_the_checkout(image: dict[str, Any]) -> None:
    names = subprocess.run(["unzip", "-Z1", str(image["wheel"])], capture_output=True, text=True).stdout \
        if shutil.which("unzip") else ""
    r = subprocess.run([str(image["py"]), "-c", "import bitnet_py, bitnet_py._core, bitnet_py.server, fastapi, "
                        "uvicorn, sys; print(bitnet_py.__file__); print(sys.prefix)"],
                       capture_output=True, text=True, cwd="/", env=clean_env({}), timeout=120)
    assert r.returncode == 0, r.stderr
    where, prefix = r.stdout.split()
    assert where.startswith(prefix) and str(REPO) not in where, where
    if names:
        assert "bitnet_py/server/__main__.py" in names and ".gguf" not in names  # the model is mounted


def test_image_serves(image: dict[str, Any]) -> None:
    """ENTRYPOINT + CMD in the emulated image: health check, a completion."""
    fin = image["stage"]
    entry = exec_form(next(a for w, a in fin if w == "ENTRYPOINT"))
    cmd = exec_form(next(a for w, a in fin if w == "CMD"))
    model_in_image = option(cmd, "--model")
    assert model_in_image is not None
    # "mount" the shipped model where the CMD expects it
    mounted = image["models"] / Path(model_in_image).name
    shutil.copyfile(SHIPPED_MODEL, mounted)
    os.chmod(mounted, 0o444)
    port = free_port()
    image_port = option(entry, "--port")
    argv = [str(image["py"]) if a == "python" and i == 0 else a for i, a in enumerate(entry + cmd)]
    argv[argv.index("--host") + 1] = "127.0.0.1"  # loopback here; 0.0.0.0 inside the container
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--model") + 1] = str(mounted)
    uid = int(next(a for w, a in fin if w == "USER").split(":")[0])
    as_image_user = os.geteuid() == 0 and world_readable_interpreter()

    def drop() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    env = clean_env({**env_of(fin), "HOME": "/nonexistent"})
    log = open(image["base"] / "server.log", "w+")
    proc = subprocess.Popen(argv, cwd="/", env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=drop if as_image_user else None)

    def output() -> str:
        log.flush()
        log.seek(0)
        return log.read()

    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, "the server exited:\n" + output()
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.time() < deadline, "no /health within 120 s:\n" + output()
            time.sleep(0.3)
        # the image's HEALTHCHECK command, run as is in the image's Python (port mapped)
        hc = next(a for w, a in fin if w == "HEALTHCHECK")
        hc_cmd = shlex.split(hc.split(" CMD ", 1)[1])
        assert hc_cmd[0] == "python"
        hc_cmd = [str(image["py"])] + [a.replace(f"127.0.0.1:{image_port}", f"127.0.0.1:{port}") for a in hc_cmd[1:]]
        r = subprocess.run(hc_cmd, env=env, cwd="/", timeout=30)
        assert r.returncode == 0, "the HEALTHCHECK command failed"
        body = json.dumps({"model": mounted.name, "prompt": "Once upon a time", "max_tokens": 8,
                           "temperature": 0}).encode()
        req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            doc = json.loads(resp.read())
        ch = doc["choices"][0]
        assert doc["object"] == "text_completion" and doc["model"] == mounted.name
        import bitnet_py  # this checkout's build: the wheel must give the same tokens

        want = bitnet_py.SimpleInference(str(SHIPPED_MODEL)).generate("Once upon a time", max_new_tokens=8,
                                                                       do_sample=False)
        assert ch["text"] == want and ch["finish_reason"] in ("length", "stop")
        assert doc["usage"]["completion_tokens"] >= 1
        if as_image_user:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            assert re.search(rf"^Uid:\s+{uid}\s", status, re.M), status
    finally:
        proc.terminate()
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        log.close()
    assert rc == 0, f"the server did not exit cleanly on SIGTERM (status {rc})"


def test_docker_smoke_script() -> None:
    """scripts/docker_smoke.sh: the real image where a daemon is reachable
    (build, run, healthy, completion, non-root, clean stop), else exit 77."""
    script = REPO / "scripts" / "docker_smoke.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    daemon = shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=60).returncode == 0
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800, env=clean_env({}))
    if daemon:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
        assert "docker_smoke: passed" in r.stderr
    else:
        assert r.returncode == 77, r.stdout + r.stderr
        assert "skipped" in r.stderr
