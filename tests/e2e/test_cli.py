"""The real ``privadx`` commands as subprocesses: simulate -> export -> diagnose, and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tests.conftest import REPO, run_cli


@pytest.mark.slow
def test_simulate_writes_the_run_folder(sim_run: Path) -> None:
    names = {p.name for p in sim_run.iterdir()}
    assert {
        "metrics.jsonl",
        "summary.json",
        "weights.npz",
        "model.onnx",
        "model.onnx.sha256",
        "curves.png",
        "config.json",
        "partition.json",
    } <= names
    summary = json.loads((sim_run / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["num_sites"] == 4
    assert set(summary["sites"]) == {f"site-{i}" for i in range(4)}
    assert summary["federated"]["sites_reported"] == 4
    assert 0.0 <= summary["federated"]["auc"] <= 1.0
    assert 0.0 <= summary["auc"] <= 1.0 and summary["centralized"]["auc"] is not None
    assert summary["onnx"]["max_abs_logit_diff"] <= 1e-4
    records = [json.loads(line) for line in (sim_run / "metrics.jsonl").read_text().splitlines()]
    fed = [r for r in records if r["series"] == "federated"]
    assert [r["round"] for r in fed] == [1, 2]
    assert all(len(r["clients"]) == 3 and len(r["sites"]) == 4 for r in fed)
    # the round records carry the norm-bound aggregator's measurements, as a gateway's do
    bounds = [r["aggregation"] for r in fed]
    assert all(b["rule"] == "norm-bound" for b in bounds)
    assert all(b["zeroing"]["clipping_norm"] > 0 and b["zeroing_norm"] > 0 for b in bounds)
    assert all(0 <= b["zeroing"]["clipped_count"] <= 3 and b["zeroed_count"] == 0 for b in bounds)
    assert [r["round"] for r in records if r["series"] == "centralized"] == [1, 2]
    partition = json.loads((sim_run / "partition.json").read_text())
    assert sum(s["examples"] for s in partition["sites"]) == 546
    assert (sim_run / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_each_site_scores_its_own_head_against_the_global_one(sim_run: Path) -> None:
    summary = json.loads((sim_run / "summary.json").read_text())
    personal = summary["personalisation"]
    rows = {f"site-{r['site']}": r for r in personal["sites"]}
    assert set(rows) == set(summary["sites"])  # every site that holds images back
    for name, row in rows.items():
        assert row["held_out_examples"] == summary["sites"][name]["examples"]
        assert row["train_examples"] > 0 and 0 <= row["global_accuracy"] <= 1
        assert 0 <= row["personal_accuracy"] <= 1
    counted = personal["sites_better_accuracy"] + personal["sites_worse_accuracy"]
    assert counted <= len(rows) and personal["fit"] == {"steps": 200, "pull": 0.001}


def test_export_then_diagnose_png_dicom_npz(
    sim_run: Path, breast_npz: Path, tmp_path: Path
) -> None:
    onnx_path = tmp_path / "exported.onnx"
    proc = run_cli(
        "export",
        str(sim_run / "weights.npz"),
        "--out",
        str(onnx_path),
        "--verify-data",
        str(breast_npz),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["max_abs_logit_diff"] <= 1e-4
    images = np.load(breast_npz)["test_images"]
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    Image.fromarray(images[1]).save(tmp_path / "b.jpg", quality=95)
    shutil.copyfile(get_testdata_file("CT_small.dcm", download=False), tmp_path / "ct.dcm")
    np.savez(tmp_path / "few.npz", images=images[:3])
    proc = run_cli(
        "diagnose",
        str(onnx_path),
        str(tmp_path / "a.png"),
        str(tmp_path / "b.jpg"),
        str(tmp_path / "ct.dcm"),
        str(tmp_path / "few.npz"),
        "--allow-unsigned",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["results"]) == 6 and out["failed"] == 0
    ct = out["results"][2]
    assert ct["source"].endswith("ct.dcm") and ct["unusual"] and ct["prediction"] is None
    assert ct["ood_distance"] > out["ood_threshold"]  # decoded, but no breast ultrasound
    others = [r for r in out["results"] if r is not ct]
    assert all(r["prediction"] in out["class_names"] for r in others)
    # The same image as PNG and inside the npz gives the same answer.
    assert out["results"][0]["probabilities"] == out["results"][3]["probabilities"]


@pytest.mark.slow
def test_int8_export_calibrated_on_site_images(
    sim_run: Path, breast_npz: Path, tmp_path: Path
) -> None:
    import onnx

    data = np.load(breast_npz)
    site = tmp_path / "site.npz"  # a site's own images: the first 100 training images
    np.savez(site, images=data["train_images"][:100], labels=data["train_labels"][:100])
    fp32 = tmp_path / "model.onnx"
    proc = run_cli(
        "export",
        str(sim_run / "weights.npz"),
        "--out",
        str(fp32),
        "--verify-data",
        str(breast_npz),
        "--int8",
        "--calibration-data",
        str(site),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    q = json.loads(proc.stdout)["int8"]
    int8 = tmp_path / "model.int8.onnx"
    assert q["onnx"] == str(int8) and q["calibration_images"] == 100
    assert (tmp_path / "model.int8.onnx.sha256").read_text().split()[0] == q["sha256"]
    assert q["int8"]["bytes"] == int8.stat().st_size < 0.4 * q["fp32"]["bytes"]
    assert q["test_images"] == len(data["test_labels"])
    assert abs(q["int8"]["accuracy"] - q["fp32"]["accuracy"]) <= 0.02
    assert abs(q["int8"]["auc"] - q["fp32"]["auc"]) <= 0.02
    model = onnx.load(str(int8))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["privadx.quantization"])["weights"] == "int8, per channel"
    assert (
        meta["privadx.class_names"]
        == {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}["privadx.class_names"]
    )
    assert any(n.op_type == "DequantizeLinear" for n in model.graph.node)
    np.savez(tmp_path / "test.npz", images=data["test_images"][:60])
    answers = []
    for path in (fp32, int8):
        proc = run_cli(
            "diagnose", str(path), str(tmp_path / "test.npz"), "--allow-unsigned", "--json"
        )
        assert proc.returncode == 0, proc.stderr
        answers.append([r["prediction"] for r in json.loads(proc.stdout)["results"]])
    agree = np.mean([a == b for a, b in zip(*answers, strict=True)])
    assert agree >= 0.95, f"int8 and fp32 agree on {agree:.0%} of 60 test images"


@pytest.mark.slow
def test_diagnose_human_output_and_partial_failure(
    sim_run: Path, tmp_path: Path, breast_npz: Path
) -> None:
    Image.fromarray(np.load(breast_npz)["test_images"][0]).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    proc = run_cli("diagnose", str(sim_run / "model.onnx"), str(tmp_path), "--allow-unsigned")
    assert proc.returncode == 7
    assert "model: UNSIGNED" in proc.stdout
    assert "ok.png" in proc.stdout and "ERROR" in proc.stdout
    assert "decision: malignant when P(malignant) >=" in proc.stdout
    assert "1 of 2 images could not be diagnosed" in proc.stderr
    assert "Traceback" not in proc.stderr


GATEWAY = [
    "gateway",
    "--broker",
    "mqtt://127.0.0.1:1",
    "--insecure",
    "--allow-unsigned",
    "--task",
    "deploy/tasks/pneumoniamnist.toml",
    "--out",
    "r",
]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["diagnose", "missing.onnx", "x.png"], 5, "cannot read the model"),
        (["export", "nowhere.npz", "--out", "x.onnx"], 5, "no such weights file"),
        (["simulate", "--dataset", "nosuchset", "--out", "r"], 2, "unknown dataset"),
        (["simulate", "--rounds", "0", "--out", "r"], 2, "expected at least 1"),
        (["data", "info", "missing.npz"], 3, "no such file"),
        (["data", "fetch", "nosuchset"], 2, "unknown dataset"),
        (
            [*GATEWAY, "--secure-aggregation", "--aggregation", "median"],
            2,
            "use --aggregation mean",
        ),
        ([*GATEWAY, "--secure-aggregation", "--dp-noise", "0.1"], 2, "needs --dp-fixed-clip"),
        ([*GATEWAY, "--target-epsilon", "3"], 2, "needs differential privacy"),
        ([*GATEWAY, "--dp-noise", "auto"], 2, "pass --target-epsilon"),
        ([*GATEWAY, "--dp-noise", "loud"], 2, "expected a number"),
        (
            ["simulate", "--dp-noise", "auto", "--target-epsilon", "1e-9", "--out", "r"],
            2,
            "above 10,000",
        ),
    ],
)
def test_bad_input_gives_clear_error_and_exit_code(
    args: list[str], code: int, message: str, tmp_path: Path
) -> None:
    proc = run_cli(*args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_diagnose_with_a_non_model_file(tmp_path: Path) -> None:
    (tmp_path / "fake.onnx").write_bytes(b"\x08\x01garbage")
    (tmp_path / "x.png").write_bytes(b"x")
    proc = run_cli(
        "diagnose", str(tmp_path / "fake.onnx"), str(tmp_path / "x.png"), "--allow-unsigned"
    )
    assert proc.returncode == 5 and "not a loadable ONNX model" in proc.stderr


def test_data_info_json(breast_npz: Path) -> None:
    proc = run_cli("data", "info", str(breast_npz), "--json")
    assert proc.returncode == 0
    info = json.loads(proc.stdout)
    assert info["splits"]["test"]["images"] == 156 and info["md5_verified"] is True


def test_config_file_supplies_defaults_and_flags_win(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("rounds = 3\nno_such_setting = 1\n")
    proc = run_cli("simulate", "--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "no_such_setting" in proc.stderr


@pytest.mark.slow
def test_signed_export_is_checked_by_diagnose(
    sim_run: Path, breast_npz: Path, tmp_path: Path
) -> None:
    """Signed: diagnosed with its provenance. Unsigned, tampered or foreign CA: exit 10."""
    from privadx.common.trust.federation import init_federation

    pki = init_federation(tmp_path / "pki", federation="f", hosts=["h"], port=8883)
    other = init_federation(tmp_path / "other", federation="f", hosts=["h"], port=8883)
    model = tmp_path / "model.onnx"
    proc = run_cli(
        "export",
        str(sim_run / "weights.npz"),
        "--out",
        str(model),
        "--verify-data",
        str(breast_npz),
        "--identity",
        str(pki.gateway),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    Image.fromarray(np.load(breast_npz)["test_images"][0]).save(tmp_path / "a.png")
    ca = str(pki.gateway / "ca.pem")
    ok = run_cli("diagnose", str(model), str(tmp_path / "a.png"), "--ca", ca, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["manifest"]["round"] == 2
    foreign = run_cli(
        "diagnose", str(model), str(tmp_path / "a.png"), "--ca", str(other.gateway / "ca.pem")
    )
    assert foreign.returncode == 10 and "not issued by this federation's CA" in foreign.stderr
    unsigned = run_cli("diagnose", str(sim_run / "model.onnx"), str(tmp_path / "a.png"))
    assert unsigned.returncode == 10 and "--allow-unsigned" in unsigned.stderr
    data = bytearray(model.read_bytes())
    data[-1] ^= 1  # one flipped bit in the weights
    model.write_bytes(bytes(data))
    tampered = run_cli("diagnose", str(model), str(tmp_path / "a.png"), "--ca", ca)
    assert tampered.returncode == 10 and "was altered" in tampered.stderr
    assert "Traceback" not in foreign.stderr + unsigned.stderr + tampered.stderr


def test_certs_init_and_issue(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    proc = run_cli("certs", "init", "--out", str(pki), "--sites", "site-a", "--json")
    assert proc.returncode == 0, proc.stderr
    written = json.loads(proc.stdout)
    assert Path(written["sites"]["site-a"], "sign.key").stat().st_mode & 0o077 == 0
    conf = Path(written["broker_config"]).read_text()
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
    assert run_cli("certs", "issue", "--pki", str(pki), "site-b").returncode == 0
    again = run_cli("certs", "init", "--out", str(pki))
    assert again.returncode == 2 and "already holds a federation CA" in again.stderr
    plain = run_cli("edge", "--broker", "mqtt://localhost:1", "--site-id", "a", "--data", "x")
    assert plain.returncode == 2 and "--insecure" in plain.stderr
    assert "Traceback" not in again.stderr + plain.stderr


@pytest.mark.slow
def test_diagnose_with_a_site_threshold_and_calibrated_probabilities(
    sim_run: Path, tmp_path: Path, breast_npz: Path
) -> None:
    Image.fromarray(np.load(breast_npz)["test_images"][0]).save(tmp_path / "ok.png")
    model = str(sim_run / "model.onnx")
    proc = run_cli("diagnose", model, str(tmp_path / "ok.png"), "--allow-unsigned")
    assert proc.returncode == 0, proc.stderr
    assert "(federation threshold); probabilities calibrated (temperature" in proc.stdout
    proc = run_cli(
        "diagnose", model, str(tmp_path / "ok.png"), "--allow-unsigned", "--threshold", "0.9"
    )
    assert "P(malignant) >= 0.9000 (site threshold)" in proc.stdout
    as_json = run_cli(
        "diagnose", model, str(tmp_path / "ok.png"), "--allow-unsigned", "--threshold", "0.01",
        "--json",
    )  # fmt: skip
    out = json.loads(as_json.stdout)
    assert out["threshold"] == 0.01 and out["threshold_source"] == "site" and out["calibrated"]
    # Below any probability: everything is called positive (the site's rule, not the model's).
    assert out["results"][0]["prediction"] == "malignant"
    bad = run_cli("diagnose", model, str(tmp_path / "ok.png"), "--threshold", "1.5")
    assert bad.returncode == 2 and "probability in (0, 1)" in bad.stderr


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[task]\nname = 'x'\n", "task.class_names: missing"),
        ("[task]\nname = 'x'\nclass_names = ['a', 'b']\npositive_class = 2\n", "positive_class"),
        ("[task]\nname = 'x'\nclass_names = ['a', 'b']\n[input]\nheight = '28'\n", "input.height"),
        ("[task]\nname = 'x'\nclass_names = ['a', 'b']\n[model]\narch = 'vit'\n", "model.arch"),
        ("[task]\nname = 'x'\nclass_names = ['a']\n", "task.class_names"),
        ("[task\n", "not valid TOML"),
    ],
)
def test_a_bad_task_file_gets_one_line_naming_the_field(
    tmp_path: Path, text: str, field: str
) -> None:
    (tmp_path / "task.toml").write_text(text)
    task = str(tmp_path / "task.toml")
    proc = run_cli(*[task if a.endswith("pneumoniamnist.toml") else a for a in GATEWAY])
    assert proc.returncode == 2, proc.stderr
    assert field in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_task_init_from_names_and_files(tmp_path: Path, breast_npz: Path) -> None:
    from privadx.common.task import TaskSpec

    proc = run_cli("task", "init", "--from", str(breast_npz), "--out", str(tmp_path / "t.toml"))
    assert proc.returncode == 0, proc.stderr
    task = TaskSpec.load(tmp_path / "t.toml")
    assert task.class_names == ("malignant", "normal, benign") and task.positive_class == 0
    assert (task.height, task.width, task.channels) == (28, 28, 1)
    # The shipped task files are what `privadx task init` writes.
    for name in ("pneumoniamnist", "breastmnist"):
        shipped = REPO / "deploy" / "tasks" / f"{name}.toml"
        run_cli("task", "init", "--from", name, "--out", str(tmp_path / f"{name}.toml"))
        assert (tmp_path / f"{name}.toml").read_text() == shipped.read_text()
    again = run_cli("task", "init", "--from", name, "--out", str(tmp_path / f"{name}.toml"))
    assert again.returncode == 2 and "--force" in again.stderr
    folder = tmp_path / "images"
    for cls in ("normal", "tumour", "cyst"):
        (folder / cls).mkdir(parents=True)
    made = run_cli(
        "task",
        "init",
        "--from",
        str(folder),
        "--out",
        str(tmp_path / "f.toml"),
        "--size",
        "64x64x3",
    )
    assert made.returncode == 0, made.stderr
    folder_task = TaskSpec.load(tmp_path / "f.toml")
    assert folder_task.class_names == ("cyst", "normal", "tumour") and folder_task.channels == 3


@pytest.mark.parametrize("bad", [".", "..", "_x", "gateway", "privadx-gateway", "a.revoked"])
def test_certs_refuse_dot_and_reserved_site_ids_and_write_nothing_outside(
    tmp_path: Path, bad: str
) -> None:
    pki = tmp_path / "pki"
    init = run_cli("certs", "init", "--out", str(pki), "--sites", "site-a", bad)
    assert init.returncode == 2 and "site id" in init.stderr, init.stderr
    assert not pki.exists()  # refused before anything was written
    assert run_cli("certs", "init", "--out", str(pki), "--sites", "site-a").returncode == 0
    before = sorted(p.relative_to(pki) for p in pki.rglob("*"))
    for command in (["issue", "--pki", str(pki), bad], ["revoke", "--pki", str(pki), bad]):
        proc = run_cli("certs", *command)
        assert proc.returncode == 2 and "site id" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert sorted(p.relative_to(pki) for p in pki.rglob("*")) == before
    edge = run_cli("edge", "--broker", "mqtt://localhost:1", "--insecure", "--allow-unsigned",
                   "--site-id", bad, "--data", "x")  # fmt: skip
    assert edge.returncode == 2 and "site id" in edge.stderr


def _with_props(model: Path, out: Path, **changes: str) -> Path:
    """A copy of ``model`` with some ``privadx.*`` metadata replaced (unsigned, as with
    --allow-unsigned nothing else vouches for it)."""
    import onnx

    proto = onnx.load(str(model))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({f"privadx.{k}": v for k, v in changes.items()})
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(out))
    return out


def _json_with(text: str, **changes: object) -> str:
    return json.dumps({**json.loads(text), **changes})


def _zeros_b64(n: int) -> str:
    import base64

    return base64.b64encode(np.zeros(n, "<f4").tobytes()).decode("ascii")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"preprocess": {"height": "28"}}, "preprocessing height must be a whole number"),
        ({"preprocess": {"height": 0}}, "preprocessing height must be a whole number"),
        ({"preprocess": {"width": -5}}, "preprocessing width must be a whole number"),
        ({"preprocess": {"std": 0}}, "preprocessing std must be positive"),
        ({"preprocess": {"channels": 3}, "model_spec": {"channels": 3}}, "the graph takes"),
        ({"preprocess": {"height": 100000, "width": 100000},
          "model_spec": {"height": 100000, "width": 100000}}, "16 to 1024 pixels"),
        ({"class_names": []}, "0 class names for a model of 2 classes"),
        ({"class_names": ["benign"]}, "1 class names for a model of 2 classes"),
        ({"positive_class": 7}, "positive class 7 is not a class index"),
        ({"positive_class": -1}, "positive class -1 is not a class index"),
        ({"threshold": float("nan")}, "threshold nan is not a finite number"),
        ({"ood": {"mean": _zeros_b64(256), "precision": _zeros_b64(256 * 256)}},
         "privadx.ood describes 3-channel images; the model takes 1"),
        ({"ood": {"threshold": "high"}}, "ood.threshold 'high' is not a positive number"),
    ],
)  # fmt: skip
@pytest.mark.slow
def test_a_model_with_bad_metadata_is_refused_naming_the_field(
    sim_run: Path, tmp_path: Path, breast_npz: Path, change: dict[str, object], message: str
) -> None:
    import onnx

    model = sim_run / "model.onnx"
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    texts = {}
    for key, value in change.items():
        if isinstance(value, dict):
            texts[key] = _json_with(props[f"privadx.{key}"], **value)
        else:
            texts[key] = json.dumps(value)
    bad = _with_props(model, tmp_path / "bad.onnx", **texts)
    Image.fromarray(np.load(breast_npz)["test_images"][0]).save(tmp_path / "a.png")
    proc = run_cli("diagnose", str(bad), str(tmp_path / "a.png"), "--allow-unsigned")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_an_image_bomb_is_reported_and_the_other_images_diagnosed(
    sim_run: Path, tmp_path: Path, breast_npz: Path
) -> None:
    from tests.unit.test_images import dicom_bomb, png_bomb

    Image.fromarray(np.load(breast_npz)["test_images"][0]).save(tmp_path / "ok.png")
    png_bomb(tmp_path / "bomb.png")
    dicom_bomb(tmp_path / "bomb.dcm", rle=True)
    args = ["diagnose", str(sim_run / "model.onnx"), str(tmp_path), "--allow-unsigned", "--json"]
    proc = run_cli(*args)
    assert proc.returncode == 7, proc.stderr
    results = {Path(r["source"]).name: r for r in json.loads(proc.stdout)["results"]}
    assert "prediction" in results["ok.png"]
    assert "above the limit of 40,000,000" in results["bomb.png"]["error"]
    assert "65535x65535" in results["bomb.dcm"]["error"]
    assert "Traceback" not in proc.stderr
    strict = run_cli(*args, "--max-pixels", "100")
    assert "above the limit of 100 " in json.loads(strict.stdout)["results"][2]["error"]


@pytest.mark.slow
def test_diagnose_on_a_named_execution_provider(
    sim_run: Path, breast_npz: Path, tmp_path: Path
) -> None:
    Image.fromarray(np.load(breast_npz)["test_images"][0]).save(tmp_path / "a.png")
    model, image = str(sim_run / "model.onnx"), str(tmp_path / "a.png")
    cpu = run_cli("diagnose", model, image, "--allow-unsigned", "--json", "--provider", "cpu")
    default = run_cli("diagnose", model, image, "--allow-unsigned", "--json")
    assert cpu.returncode == 0 and json.loads(cpu.stdout) == json.loads(default.stdout)
    proc = run_cli("diagnose", model, image, "--allow-unsigned", "--provider", "tensorrt")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        "'tensorrt' is not available" in proc.stderr and "cpu (CPUExecutionProvider)" in proc.stderr
    )
