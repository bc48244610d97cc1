"""``restora run`` as a real subprocess on real image files: outputs, names, exit status 0/1/2,
the summary, bad usage refused with the server's own codes and messages, and --server mode."""
from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from pipelines.params import schema
from pipelines.tools import build_tool_registry
from server.app import create_app
from server.auth import KeyStore
from server.run_inputs import collect_inputs, params_from_schema
from tests.conftest import astronaut, encode, form
from tests.server_process import ROOT

_OPTIONS = ["--device", "cpu", "--no-embedded-default"]


def restora_run(*args: str, data_dir: Path, cwd: Path, tty: bool = False) -> subprocess.CompletedProcess:
    """The command as a user runs it; ``tty``: its stderr is a terminal (a pseudo-terminal)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    env.pop("RESTORA_API_KEY", None)
    command = [sys.executable, "-m", "server.cli", "run", *args, "--data-dir", str(data_dir), *_OPTIONS]
    if not tty:
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    terminal, stderr = pty.openpty()
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        os.close(stderr)
        drawn = _read_all(terminal)
        code = proc.wait(timeout=300)
        stdout.seek(0)
        return subprocess.CompletedProcess(command, code, stdout.read(), drawn.decode())


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every process holding the terminal has closed it
            chunk = b""
        if not chunk:
            os.close(fd)
            return b"".join(chunks)
        chunks.append(chunk)


def _photos(folder: Path) -> None:
    (folder / "sub" / ".cache").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(encode(astronaut(48)))
    (folder / "sub" / "b.png").write_bytes(encode(astronaut(40), "PNG"))
    (folder / "sub" / ".cache" / "c.jpg").write_bytes(encode(astronaut(32)))  # hidden: left alone
    (folder / "notes.txt").write_text("not a photo")  # not an image name: left alone inside folders


def test_a_folder_is_restored_under_the_output_dir(tmp_path):
    _photos(tmp_path / "photos")
    run = restora_run("restore-photo", "photos", "--recursive", "-o", "out", "--set", "denoise=false",
                      data_dir=tmp_path / "data", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*"))
    assert written == ["a_restored.jpg", "sub", "sub/b_restored.png"]  # no partial files
    assert Image.open(tmp_path / "out" / "a_restored.jpg").size == (48, 48)
    assert Image.open(tmp_path / "out" / "sub" / "b_restored.png").format == "PNG"
    assert "restore-photo: 2 of 2 file(s) done, 0 failed" in run.stdout
    assert f"done    {Path('photos/sub/b.png')} -> {Path('out/sub/b_restored.png')}" in run.stdout
    # Not a terminal: plain progress lines on stderr, no cursor movement.
    assert "a.jpg: " in run.stderr and "\x1b[" not in run.stderr + run.stdout


def test_failures_are_reported_with_their_codes_and_exit_1_with_bars_on_a_terminal(tmp_path):
    good = encode(astronaut(48))
    (tmp_path / "good.jpg").write_bytes(good)
    (tmp_path / "broken.jpg").write_bytes(good[:600] + bytes(range(256)) * 8)  # header fine, pixels noise
    (tmp_path / "text.jpg").write_text("this is not an image")
    run = restora_run("restore-photo", "good.jpg", "broken.jpg", "text.jpg", "--set", "denoise=false",
                      data_dir=tmp_path / "data", cwd=tmp_path, tty=True)
    assert run.returncode == 1, run.stderr
    # On a terminal: a bar per file and one overall, redrawn in place; the server's log kept off it.
    assert "\x1b[" in run.stderr and "worker-0" not in run.stderr
    assert any(line.startswith("good.jpg ") and "%" in line for line in run.stderr.splitlines())
    assert "] 100% 3/3 files, 2 failed" in run.stderr
    assert Image.open(tmp_path / "good_restored.jpg").size == (48, 48)  # next to its input
    assert not (tmp_path / "broken_restored.jpg").exists() and not (tmp_path / "text_restored.jpg").exists()
    summary = run.stdout[run.stdout.index("restore-photo: "):]
    assert summary.startswith("restore-photo: 1 of 3 file(s) done, 2 failed")
    failures = summary.splitlines()[1:]  # in the order the files were given
    assert failures[0].startswith("  broken.jpg: UNDECODABLE: ")  # the job failed in the worker
    assert failures[1] == "  text.jpg: UNSUPPORTED_FORMAT (415): The file is not an image in a supported format."


async def test_bad_usage_exits_2_with_the_servers_code_and_message_before_any_work(tmp_path, aiohttp_client, settings):
    (tmp_path / "a.jpg").write_bytes(encode(astronaut(32)))
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    for tool, fields in (("restore-fotos", {}), ("restore-photo", {"denoiseStrength": "500", "bogus": "1"})):
        answer = (await (await client.post(f"/api/v1/tools/{tool}", data=form(encode(astronaut(32)), **fields))).json())
        sets = [arg for key, value in fields.items() for arg in ("--set", f"{key}={value}")]
        run = await asyncio.to_thread(restora_run, tool, "a.jpg", *sets, data_dir=tmp_path / "cli-data", cwd=tmp_path)
        assert run.returncode == 2, run.stderr
        error = answer["error"]
        assert f"{error['code']} (400): {error['message']}" in run.stderr
        for problem in error.get("fields", []):
            assert f"  {problem['field']}: {problem['message']}" in run.stderr
    for args, code in ((["restore-photo", "missing.jpg"], "INPUT_NOT_FOUND"),
                       (["restore-photo", "a.jpg", "--settings", "[1]"], "INVALID_JSON"),
                       (["restore-photo", "a.jpg", "--set", "denoise"], "INVALID_PARAMS")):
        run = restora_run(*args, data_dir=tmp_path / "cli-data", cwd=tmp_path)
        assert run.returncode == 2 and f"restora run: {code}: " in run.stderr, (args, run.stderr)
    assert not (tmp_path / "cli-data").exists() and not (tmp_path / "a_restored.jpg").exists()  # nothing started


async def test_server_mode_submits_to_a_running_restora_with_a_key(tmp_path, aiohttp_server, settings):
    key, _ = KeyStore(settings.db_path).create("cli")
    server = await aiohttp_server(create_app(settings.with_overrides(auth="on")))
    (tmp_path / "x.gif").write_bytes(encode(astronaut(32), "GIF"))
    (tmp_path / "x.bmp").write_bytes(encode(astronaut(36), "BMP"))
    args = ["restore-photo", "x.gif", "x.bmp", "-o", "out", "--server", str(server.make_url("/")),
            "--api-key", key, "--set", "denoise=false"]
    # The command runs while this event loop serves the app it talks to.
    run = await asyncio.to_thread(restora_run, *args, data_dir=tmp_path / "unused", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # Both results are PNGs the server names x_restored.png: the one finished second gets "-2".
    sizes = {Image.open(tmp_path / "out" / name).size for name in ("x_restored.png", "x_restored-2.png")}
    assert sizes == {(32, 32), (36, 36)}
    assert "2 of 2 file(s) done" in run.stdout
    denied = await asyncio.to_thread(restora_run, *args[:-4], "--set", "denoise=false",
                                     data_dir=tmp_path / "unused", cwd=tmp_path)
    assert denied.returncode == 2 and "UNAUTHORIZED (401)" in denied.stderr, denied.stderr


def test_the_published_schemas_give_back_the_declared_parameters():
    tools = build_tool_registry()
    for name in tools:
        published = tools.get(name).describe()["parameters"]
        assert schema(params_from_schema(published)) == published, name


def test_folders_skip_earlier_results_in_the_output_dir_and_take_each_file_once(tmp_path):
    _photos(tmp_path / "photos")
    out = tmp_path / "photos" / "restored"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "b_restored.png").write_bytes(encode(astronaut(40), "PNG"))  # an earlier run's result
    items = collect_inputs([str(tmp_path / "photos"), str(tmp_path / "photos" / "a.jpg")], out, recursive=True)
    assert [(i.source.relative_to(tmp_path), i.dest_dir.relative_to(tmp_path)) for i in items] == [
        (Path("photos/a.jpg"), Path("photos/restored")), (Path("photos/sub/b.png"), Path("photos/restored/sub"))]
    top_level = collect_inputs([str(tmp_path / "photos")], None, recursive=False)
    assert [(i.source.name, i.dest_dir) for i in top_level] == [("a.jpg", tmp_path / "photos")]
