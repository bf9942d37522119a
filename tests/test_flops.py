"""`rmt flops`: analytic counts, the paper's headline ratios, measured FLOPs, backbones and the command line."""

from __future__ import annotations

import json

import pytest

from rmt_cli import flops
from rmt_cli.errors import UsageError
from rmt_cli.flops import OPT_FAMILY, ModelShape


# --- the paper's numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, paper", [("opt-125m", 295.0), ("opt-175b", 29.0)])
def test_paper_convention_reproduces_headline_ratios(model, paper):
    shape = OPT_FAMILY[model]
    ratio = flops.full_attention_flops(shape, 2_048_000) / flops.rmt_flops(shape, 2_048_000, 512, 0)
    assert abs(ratio / paper - 1) < 0.05, ratio
    # 4096 segments of 512 tokens (2,097,152 tokens) land within 1.5% of the paper.
    ratio_4096 = flops.full_attention_flops(shape, 4096 * 512) / flops.rmt_flops(shape, 4096 * 512, 512, 0)
    assert abs(ratio_4096 / paper - 1) < 0.015, ratio_4096


def test_paper_check_separates_conventions():
    check = {(r["convention"], r["model"]): r for r in flops.paper_check()}
    assert abs(check["paper", "opt-125m"]["deviation"]) < 0.05
    assert abs(check["paper", "opt-175b"]["deviation"]) < 0.05
    # Counting both vocabulary terms or neither misses OPT-125M's x295 by far more than 5%.
    assert check["chinchilla", "opt-125m"]["ratio"] < 0.8 * 295
    assert check["layers", "opt-125m"]["ratio"] > 1.3 * 295
    # OPT-175B barely depends on the vocabulary terms.
    for conv in ("chinchilla", "layers", "matmul"):
        assert abs(check[conv, "opt-175b"]["deviation"]) < 0.05


def test_compare_rows_for_the_paper_request():
    rows = flops.compare([OPT_FAMILY["opt-125m"], OPT_FAMILY["opt-175b"]], [512, 2_048_000])
    by_key = {(r["model"], r["tokens"]): r for r in rows}
    first = by_key["opt-125m", 512]
    assert first["segments"] == 1 and first["ratio"] == pytest.approx(1.0)
    assert first["full_multiple"] == pytest.approx(1.0) and first["rmt_multiple"] == pytest.approx(1.0)
    big = by_key["opt-175b", 2_048_000]
    assert big["segments"] == 4000
    assert big["rmt_multiple"] == pytest.approx(4000)
    assert big["ratio"] == pytest.approx(big["full_flops"] / big["rmt_flops"])
    assert big["full_multiple"] == pytest.approx(big["ratio"] * 4000)


# --- analytic counting --------------------------------------------------------------------------------------------


SMALL = ModelShape(name="small", layers=2, d_model=8, heads=2, ffn=32, vocab=10, max_positions=64)


def test_forward_terms_follow_chinchilla_appendix_f():
    seq, d, L, h, V, ffn = 4, 8, 2, 2, 10, 32
    terms = flops.forward_terms(SMALL, seq, "chinchilla")
    assert terms["embeddings"] == 2 * seq * V * d
    assert terms["kqv"] == L * 2 * 3 * seq * d * d  # key_size * heads = d
    assert terms["logits_qk"] == L * 2 * seq * seq * d
    assert terms["softmax"] == L * 3 * h * seq * seq
    assert terms["softmax_v"] == L * 2 * seq * seq * d
    assert terms["attn_out"] == L * 2 * seq * d * d
    assert terms["dense"] == L * 2 * seq * (d * ffn + d * ffn)
    assert terms["vocab_logits"] == 2 * seq * d * V
    total = 2 * seq * V * d + L * (2 * 3 * seq * d * d + 2 * seq * seq * d + 3 * h * seq * seq + 2 * seq * seq * d
                                   + 2 * seq * d * d + 2 * seq * 2 * d * ffn) + 2 * seq * d * V
    assert flops.forward_flops(SMALL, seq, "chinchilla") == total
    assert flops.forward_flops(SMALL, seq, "paper") == total - 2 * seq * V * d
    assert flops.forward_flops(SMALL, seq, "layers") == total - 4 * seq * V * d
    assert flops.forward_flops(SMALL, seq, "matmul") == total - 2 * seq * V * d - L * 3 * h * seq * seq


def test_matmul_convention_counts_logits_only_with_an_lm_head():
    encoder = ModelShape(name="enc", layers=2, d_model=8, heads=2, ffn=32, vocab=10, max_positions=64,
                         encoder=True, lm_head=False)
    assert flops.forward_terms(encoder, 4, "matmul")["vocab_logits"] == 0
    assert flops.forward_terms(SMALL, 4, "matmul")["vocab_logits"] == 2 * 4 * 8 * 10


def test_gated_mlp_and_grouped_query_attention():
    llama = ModelShape(name="llama", layers=1, d_model=16, heads=4, ffn=40, vocab=10, max_positions=64,
                       kv_heads=2, ffn_matrices=3)
    terms = flops.forward_terms(llama, 5, "matmul")
    assert terms["kqv"] == 2 * 5 * 16 * (16 + 2 * 8)  # q: 4 heads x 4, k and v: 2 heads x 4
    assert terms["dense"] == 2 * 5 * 3 * 16 * 40


def test_rmt_is_linear_and_full_attention_is_not():
    shape = OPT_FAMILY["opt-125m"]
    one = flops.rmt_flops(shape, 512)
    assert flops.rmt_flops(shape, 512 * 8) == 8 * one
    assert flops.rmt_flops(shape, 513) == 2 * one  # a partial last segment costs a whole one
    assert flops.full_attention_flops(shape, 512 * 8) > 8 * flops.full_attention_flops(shape, 512)


def test_memory_takes_positions_of_each_segment():
    from rmt_cli.engine import content_length

    shape = OPT_FAMILY["opt-125m"]
    assert flops.segment_content(shape, 512, 12) == 488  # mem content mem: read and write slots, as in the engine
    assert flops.segment_content(shape, 512, 12) == content_length(512, 12, "decoder")
    assert flops.segment_count(shape, 2_048_000, 512, 12) == 4197
    assert flops.rmt_flops(shape, 2_048_000, 512, 12) == 4197 * flops.forward_flops(shape, 512)
    encoder = flops.shape_from_hf_config(flops.tiny_hf_config("tiny-bert", 512))
    assert flops.segment_content(encoder, 512, 10) == 499  # [CLS] mem [SEP] content [SEP], as in the engine
    assert flops.segment_content(encoder, 512, 10) == content_length(512, 10)


# --- measured FLOPs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, memory", [("tiny-bert", 4), ("tiny-bert", 0), ("tiny-opt", 0), ("tiny-gpt2", 0),
                                          ("tiny-opt", 6)])
def test_measured_flops_match_the_matmul_count(name, memory):
    segment = 32
    config = flops.tiny_hf_config(name, 128)
    shape = flops.shape_from_hf_config(config, name)
    content = flops.segment_content(shape, segment, memory)
    tokens = [content, 3 * content]  # one segment, then three
    rows = flops.measure_model(config, shape, tokens, segment, memory)
    assert [r["segments"] for r in rows] == [1, 3]
    for row in rows:
        assert row["full_measured"] and row["rmt_measured"]
        assert abs(row["full_analytic"] / row["full_measured"] - 1) < 0.02, row
        assert abs(row["rmt_analytic"] / row["rmt_measured"] - 1) < 0.02, row
        assert row["rmt_error"] < 0.02 and row["full_error"] < 0.02


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-opt"])
def test_measured_decoder_through_the_engine_equals_the_count(name):
    # The engine reads 2m + content positions per segment from the base model, and its head once at the end.
    config = flops.tiny_hf_config(name, 64)
    shape = flops.shape_from_hf_config(config, name)
    content = flops.segment_content(shape, 32, 5)
    assert content == 22
    rows = flops.measure_model(config, shape, [content, 2 * content + 1], 32, 5)
    assert [r["segments"] for r in rows] == [1, 3]
    for row in rows:
        assert row["rmt_measured"] == row["rmt_analytic"] and row["full_measured"] == row["full_analytic"]
    no_lm_head = ModelShape(**{**shape.__dict__, "lm_head": False})
    assert rows[1]["rmt_analytic"] == 3 * flops.forward_flops(no_lm_head, 32, "matmul") + 2 * 64 * 6


def test_measured_bert_with_pooler_counts_the_pooler():
    config = flops.tiny_hf_config("tiny-bert", 64)
    shape = flops.shape_from_hf_config(config, "tiny-bert")
    with_pooler = ModelShape(**{**shape.__dict__, "pooler": True})
    rows = flops.measure_model(config, with_pooler, [58], 32, 0)
    assert rows[0]["segments"] == 2
    assert rows[0]["rmt_measured"] == rows[0]["rmt_analytic"]
    assert rows[0]["rmt_analytic"] - flops.rmt_flops(shape, 58, 32, 0, "matmul", flops.MEASURE_LABELS) == \
        2 * 2 * 64 * 64  # the pooler's d x d matmul, once per segment


def test_measure_defaults_to_one_two_and_four_segments():
    rows = flops.measure("tiny-opt,tiny-bert", None, 16, 2)
    assert [(r["model"], r["tokens"], r["segments"]) for r in rows] == [
        ("tiny-opt", 12, 1), ("tiny-opt", 24, 2), ("tiny-opt", 48, 4),
        ("tiny-bert", 11, 1), ("tiny-bert", 22, 2), ("tiny-bert", 44, 4)]
    assert all(r["rmt_error"] < 0.02 and r["full_error"] < 0.02 for r in rows)


def test_measure_caps_lengths():
    with pytest.raises(UsageError, match="up to"):
        flops.measure(None, [10_000_000], 512, 0)
    with pytest.raises(UsageError, match="analytically only"):
        flops.measure("opt-125m", [512], 512, 0)


# --- shapes from Hugging Face configs and backbones ---------------------------------------------------------------


def test_shape_from_hf_config_key_names():
    from transformers import BertConfig, GPT2Config, LlamaConfig, OPTConfig

    bert = flops.shape_from_hf_config(BertConfig(hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                                                 intermediate_size=96, vocab_size=100, max_position_embeddings=256))
    assert (bert.layers, bert.d_model, bert.heads, bert.ffn) == (3, 48, 4, 96)
    assert (bert.vocab, bert.max_positions) == (100, 256)
    assert bert.encoder and not bert.lm_head and bert.layout == "encoder"
    gpt2 = flops.shape_from_hf_config(GPT2Config(n_embd=48, n_layer=3, n_head=4, n_inner=None, vocab_size=100,
                                                 n_positions=256))
    assert (gpt2.layers, gpt2.d_model, gpt2.heads, gpt2.ffn, gpt2.max_positions) == (3, 48, 4, 192, 256)
    assert gpt2.lm_head and not gpt2.encoder and gpt2.layout == "decoder"
    opt = flops.shape_from_hf_config(OPTConfig(hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                                               ffn_dim=200, vocab_size=100, max_position_embeddings=256,
                                               word_embed_proj_dim=32))
    assert (opt.ffn, opt.embed_proj) == (200, 32)
    llama = flops.shape_from_hf_config(LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                   num_key_value_heads=2, intermediate_size=160, vocab_size=100,
                                                   max_position_embeddings=256))
    assert (llama.ffn, llama.kv_heads, llama.ffn_matrices, llama.key_size) == (160, 2, 3, 16)
    with pytest.raises(UsageError, match="layer count"):
        flops.shape_from_hf_config({"model_type": "x", "hidden_size": 4})


def test_opt_350m_shape_from_config_has_projections():
    from transformers import OPTConfig

    config = OPTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, ffn_dim=256, vocab_size=1000,
                       max_position_embeddings=64, word_embed_proj_dim=32)
    shape = flops.shape_from_hf_config(config, "opt-proj")
    rows = flops.measure_model(config, shape, [32], 32, 0)
    assert rows[0]["full_measured"] == rows[0]["full_analytic"]


@pytest.fixture
def conf_dir(tmp_path):
    from transformers import OPTConfig

    folder = tmp_path / "opt-small"
    OPTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=256, vocab_size=500,
              max_position_embeddings=1024).save_pretrained(folder)
    backbones = tmp_path / "conf" / "backbone"
    backbones.mkdir(parents=True)
    (backbones / "local.yaml").write_text(f"name: local\nname_or_path: {folder}\n")
    (backbones / "inline.yaml").write_text("name: inline\nconfig:\n  vocab_size: 300\n  hidden_size: 32\n"
                                           "  num_hidden_layers: 2\n  num_attention_heads: 2\n"
                                           "  intermediate_size: 64\n  max_position_embeddings: 128\n")
    (backbones / "hub.yaml").write_text("name: hub\nname_or_path: some-org/some-model\n")
    return tmp_path / "conf"


def test_backbone_from_yaml_folder_and_inline_config(conf_dir):
    local = flops.backbone_shape("local", conf_dir)
    assert (local.name, local.layers, local.d_model, local.vocab, local.max_positions) == ("local", 2, 64, 500, 1024)
    direct = flops.backbone_shape(str(conf_dir.parent / "opt-small"))
    assert (direct.d_model, direct.ffn, direct.lm_head) == (64, 256, True)
    inline = flops.backbone_shape("inline", conf_dir)
    assert (inline.d_model, inline.ffn, inline.max_positions, inline.encoder) == (32, 64, 128, True)
    with pytest.raises(UsageError, match="local, inline|hub, inline"):
        flops.backbone_shape("missing", conf_dir)
    with pytest.raises(UsageError, match="not a local folder"):
        flops.backbone_shape("hub", conf_dir)
    with pytest.raises(UsageError, match="exceeds the 128 positions"):
        flops.compare([inline], [512], 512, 0)


# --- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda: flops.resolve_models("opt-1b"), "known models are opt-125m"),
    (lambda: flops.parse_tokens("512,0"), "positive"),
    (lambda: flops.parse_tokens("512,-3"), "positive"),
    (lambda: flops.parse_tokens("lots"), "integers"),
    (lambda: flops.compare([OPT_FAMILY["opt-125m"]], [512], 4096, 0), "exceeds the 2048 positions"),
    (lambda: flops.compare([OPT_FAMILY["opt-125m"]], [512], 512, 512), "smaller than --segment-length"),
    (lambda: flops.compare([OPT_FAMILY["opt-125m"]], [512], 512, -1), "0 or more"),
    (lambda: flops.check_format("xml"), "table, csv, json"),
    (lambda: flops.convention("flops"), "paper, chinchilla"),
])
def test_bad_input_is_a_one_line_usage_error(call, message):
    with pytest.raises(UsageError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


# --- command line -------------------------------------------------------------------------------------------------


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


def test_cli_json_is_the_only_stdout(runner):
    from rmt_cli.cli import app

    result = runner.invoke(app, ["flops", "--models", "opt-125m,opt-175b", "--tokens", "2048000",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["model"] for r in rows] == ["opt-125m", "opt-175b"]
    for row in rows:
        assert {"model", "tokens", "full_flops", "rmt_flops", "ratio"} <= row.keys()
        assert row["tokens"] == 2_048_000
        assert row["ratio"] == pytest.approx(row["full_flops"] / row["rmt_flops"])
    assert abs(rows[0]["ratio"] / 295 - 1) < 0.05 and abs(rows[1]["ratio"] / 29 - 1) < 0.05


def test_cli_table_writes_csv_and_figure(runner, tmp_path):
    from rmt_cli.cli import app

    out = tmp_path / "run"
    result = runner.invoke(app, ["flops", "--models", "opt-125m,opt-13b", "--tokens", "512,8192,32768,2048000",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "opt-13b" in result.stdout and "2,048,000" in result.stdout
    lines = (out / "flops.csv").read_text().splitlines()
    assert lines[0].startswith("model,tokens,") and len(lines) == 1 + 2 * 4
    png = (out / "flops.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_cli_csv_memory_option(runner):
    from rmt_cli.cli import app

    result = runner.invoke(app, ["flops", "--models", "opt-125m", "--tokens", "2048000", "--memory-size", "12",
                                 "--format", "csv"])
    assert result.exit_code == 0, result.output
    header, row = result.stdout.strip().splitlines()
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert values["segments"] == "4197" and values["memory_size"] == "12"  # 488 content tokens per segment


def test_cli_measure_json(runner):
    from rmt_cli.cli import app

    result = runner.invoke(app, ["flops", "--measure", "--models", "tiny-gpt2,tiny-bert", "--segment-length", "32",
                                 "--tokens", "32,96", "--memory-size", "4", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 4
    assert all(r["rmt_error"] < 0.02 and r["full_error"] < 0.02 for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--models", "opt-1b"], "unknown model 'opt-1b'"),
    (["--tokens", "0"], "positive"),
    (["--segment-length", "4096"], "exceeds the 2048 positions"),
    (["--memory-size", "512"], "smaller than --segment-length"),
    (["--format", "xml"], "--format must be one of"),
    (["--backbone", "no-such-backbone"], "unknown backbone"),
])
def test_cli_bad_input_exits_2_with_one_line(runner, args, message):
    from rmt_cli.cli import app

    result = runner.invoke(app, ["flops", *args])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_the_figure_draws_curves_from_512_tokens_to_the_longest_requested_length(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from rmt_cli.flops import compare, curve_lengths, plot_figure, resolve_models

    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    shapes = resolve_models("opt-125m,opt-175b", None)
    rows = compare(shapes, [2_048_000])
    plot_figure(rows, tmp_path / "flops.png", compare(shapes, curve_lengths([2_048_000])))
    left, right = figures[0].axes
    curves = [line for line in left.lines if line.get_linestyle() != "None"]
    assert curves and all(line.get_xdata()[0] == 512 and line.get_xdata()[-1] == 32768 for line in curves)
    assert all(line.get_linestyle() != "None" for line in left.lines)  # no requested length below 32K
    marks = [line for line in right.lines if line.get_linestyle() == "None"]
    assert len(marks) == 4 and all(list(line.get_xdata()) == [2_048_000] for line in marks)
    assert max(line.get_xdata()[-1] for line in right.lines) == 2_048_000
    assert curve_lengths([3000, 700]) == [512, 700, 1024, 2048, 3000]


def test_a_short_request_gets_one_panel(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from rmt_cli.flops import compare, curve_lengths, plot_figure, resolve_models

    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    shapes = resolve_models("opt-125m", None)
    plot_figure(compare(shapes, [4096]), tmp_path / "flops.png", compare(shapes, curve_lengths([4096])))
    (panel,) = figures[0].axes
    assert panel.get_title() == "(a) up to 4,096 tokens"
