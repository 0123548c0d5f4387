"""The TypeScript SDK (``sdk/typescript``): built, tested with Node's runner against a live
``rlm serve``, packed and installed like a user's dependency, its types checked for drift.

One server serves the module. ``npm ci`` runs from the committed lock file when
``node_modules`` is absent (a fresh clone, CI), then ``tsc`` builds ``dist/``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import rlm
from tests.api.readme_blocks import readme_blocks
from tests.api.sdk_typescript import SDK_DIR, LiveServer, live_server, node_env, npm, run
from tests.shared_data import REPO_ROOT, shared_file

pytestmark = pytest.mark.integration

NODE_TESTS = sorted(p.name for p in (SDK_DIR / "test").glob("*.test.mjs"))
_IMPORTS_SDK = "from '@rlm-hypervisor/sdk'"


@pytest.fixture(scope="module")
def built() -> Path:
    """``sdk/typescript`` with its pinned tools installed and ``dist/`` built by ``tsc``."""
    if not (SDK_DIR / "node_modules" / ".package-lock.json").is_file():
        npm("ci", timeout=600)
    npm("run", "build")
    assert (SDK_DIR / "dist" / "index.js").is_file() and (SDK_DIR / "dist" / "index.d.ts").is_file()
    return SDK_DIR / "dist"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("sdk-ts-home")) as live:
        yield live


@pytest.fixture(scope="module")
def blob(server: LiveServer) -> bytes:
    data = bytes(range(256)) * 40  # every byte value, 10 KiB
    public = server.settings.state_dir / "data" / "public"  # every reader's, on the default policy
    public.mkdir(parents=True, exist_ok=True)
    (public / "sdk-ts.bin").write_bytes(data)
    return data


def test_the_package_is_versioned_with_the_service_and_has_no_runtime_dependencies() -> None:
    package = json.loads((SDK_DIR / "package.json").read_text(encoding="utf-8"))
    assert package["version"] == rlm.__version__
    assert f'VERSION = "{rlm.__version__}"' in (SDK_DIR / "src" / "version.ts").read_text()
    assert "dependencies" not in package and "peerDependencies" not in package
    # Every tool is pinned to one version, and the lock file holds the same pins.
    lock = json.loads((SDK_DIR / "package-lock.json").read_text(encoding="utf-8"))
    for name, version in package["devDependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), (name, version)
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert (SDK_DIR / ".gitignore").read_text().split() == ["node_modules/", "dist/", "*.tgz"]


def test_generated_types_match_the_services_openapi_document(tmp_path: Path, built: Path) -> None:
    """``openapi.json`` and ``src/schema.ts`` are what this checkout's app generates today."""
    del built  # only for node_modules (openapi-typescript)
    dumped = run(
        [str(REPO_ROOT / ".venv" / "bin" / "python"), "scripts/dump_openapi.py"], SDK_DIR
    ).stdout
    committed = (SDK_DIR / "openapi.json").read_text(encoding="utf-8")
    assert json.loads(committed)["paths"], "openapi.json has no paths"
    assert dumped == committed, (
        "sdk/typescript/openapi.json differs from the app's document: run "
        "`python sdk/typescript/scripts/dump_openapi.py > sdk/typescript/openapi.json && "
        "(cd sdk/typescript && npm run generate)` and commit both"
    )
    (tmp_path / "openapi.json").write_text(dumped, encoding="utf-8")
    out = tmp_path / "schema.ts"
    generator = SDK_DIR / "node_modules" / ".bin" / "openapi-typescript"
    flags = ["--default-non-nullable", "false", "-o", str(out)]  # as `npm run generate`
    run([str(generator), str(tmp_path / "openapi.json"), *flags], SDK_DIR)
    assert out.read_text(encoding="utf-8") == (SDK_DIR / "src" / "schema.ts").read_text(
        encoding="utf-8"
    ), "src/schema.ts is stale: run `npm run generate` in sdk/typescript and commit it"


def test_node_suite_against_a_live_server(server: LiveServer, blob: bytes, built: Path) -> None:
    """``node --test`` over ``sdk/typescript/test``: every test passes against the server."""
    del built
    assert len(NODE_TESTS) >= 6, NODE_TESTS
    node = shutil.which("node")
    assert node is not None, "node is not installed (scripts/system-deps.sh installs it)"
    done = subprocess.run(
        [node, "--test", "--test-reporter=tap", *(f"test/{name}" for name in NODE_TESTS)],
        cwd=SDK_DIR,
        env=node_env(server, blob),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-12000:]
    passed = re.search(r"^# pass (\d+)$", done.stdout, re.M)
    failed = re.search(r"^# fail (\d+)$", done.stdout, re.M)
    assert passed is not None and failed is not None, output[-4000:]
    assert int(failed.group(1)) == 0
    # Every test the files declare ran and passed: none was silently left out.
    declared = sum(
        len(re.findall(r"^\s*test\(", (SDK_DIR / "test" / name).read_text(), re.M))
        for name in NODE_TESTS
    )
    assert declared >= 40
    assert int(passed.group(1)) == declared, output[-4000:]
    assert server.served.process.poll() is None, server.served.output[-4000:]


def _snippets(path: Path) -> list[str]:
    blocks = [b for b in readme_blocks(path) if b.lang in ("ts", "typescript")]
    return [b.code for b in blocks if _IMPORTS_SDK in b.code]


def test_the_packed_package_installs_and_the_documents_snippets_run(
    server: LiveServer, built: Path, tmp_path: Path
) -> None:
    """``npm pack`` → ``npm install <tarball>`` in an empty project → the API document's and
    the README's TypeScript snippets, type-checked by ``tsc`` and run by Node as written."""
    del built
    # dist/ is the fixture's build: packing need not run tsc (prepack) again.
    packed = npm("pack", "--json", "--ignore-scripts", "--pack-destination", str(tmp_path))
    [info] = json.loads(packed.stdout)
    files = {f["path"] for f in info["files"]}
    assert {"dist/index.js", "dist/index.d.ts", "package.json", "README.md"} <= files
    assert not any(f.startswith(("src/", "test/", "node_modules/")) for f in files), files
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    # --offline: the package has no dependencies, so nothing may be fetched.
    npm("install", "--offline", str(tmp_path / info["filename"]), cwd=project)
    installed = json.loads((project / "node_modules/@rlm-hypervisor/sdk/package.json").read_text())
    assert installed["name"] == "@rlm-hypervisor/sdk" and "dependencies" not in installed

    document = _snippets(shared_file("seed/rlm-hypervisor-api.md"))
    readme = _snippets(REPO_ROOT / "README.md") + _snippets(SDK_DIR / "README.md")
    assert len(document) == 2 and len(readme) >= 2
    # The document's second snippet names its key as a placeholder for the reader's own.
    placeholder = "apiKey: 'your-api-key'"
    assert document[1].count(placeholder) == 1
    token = server.token(f"snippet-{server.tag}", "rlm:execute rlm:read rlm:quota:read", "user")
    document[1] = document[1].replace(placeholder, f"apiKey: {json.dumps(token)}")
    names = []
    for i, code in enumerate([*document, *readme]):
        name = f"snippet{i}.ts"
        (project / name).write_text(code, encoding="utf-8")
        names.append(name)
    # Type-checked, never run: the generated types refuse what the service would refuse.
    shutil.copy(SDK_DIR / "test" / "typing.ts", project / "typing.ts")
    tsconfig = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "strict": True,
            # The snippets are checked against the SDK's declarations; checking the declaration
            # files themselves (@types/node's thousands of lines) is the SDK build's business.
            "skipLibCheck": True,
            "outDir": "out",
            "typeRoots": [str(SDK_DIR / "node_modules" / "@types")],
            "types": ["node"],
        },
        "files": [*names, "typing.ts"],
    }
    (project / "tsconfig.json").write_text(json.dumps(tsconfig))
    node = shutil.which("node")
    assert node is not None, "node is not installed (scripts/system-deps.sh installs it)"
    run([node, str(SDK_DIR / "node_modules" / "typescript" / "bin" / "tsc")], project)

    # As a user runs them: their key and the service's URL in the environment, nothing else.
    env = {"HOME": str(tmp_path), "RLM_BASE_URL": server.base_url, "RLM_API_KEY": token}
    outputs = [run([node, f"out/{n[:-3]}.js"], project, env).stdout for n in names]
    assert outputs[0] == ""  # the Quick Start prints nothing; its task is checked below
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        remaining = http.get("/quotas/user/me").json()["daily"]["agentsRemaining"]
        tasks = http.get("/tasks", params={"limit": 50}).json()["tasks"]
    # Each snippet ran one sum of 1..5 as this user; all but the Quick Start print what is left
    # of the daily quota then (the README's also the result), the last one what is left now.
    left = []
    for printed in outputs[1:]:
        match = re.fullmatch(r"(?:Result: 15\n)?Remaining: (\d+)\n", printed)
        assert match is not None, printed
        left.append(int(match.group(1)))
    assert left == sorted(left, reverse=True) and len(set(left)) == len(left), left
    assert left[-1] == remaining
    assert len(tasks) == len(names)
    assert {(t["status"], t["result"]["output"]) for t in tasks} == {("completed", 15)}
