"""``python -m recmodels import-recbole``: RecBole 1.2.0's SASRec and BERT4Rec converted weight for weight.

With RecBole installed, a SASRec and a BERT4Rec are trained by RecBole for one epoch (on a slice of this project's
ml-100k split, so that an epoch takes seconds), converted with the CLI, and this project's scores must equal
RecBole's ``full_sort_predict`` within 1e-4; RecBole's own item numbering must equal the one the import rebuilds.
Without RecBole those tests skip; the refusals and hostile files need only the wheel's ml-100k files.
"""

from __future__ import annotations

import builtins
import importlib.resources
import importlib.util
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from recmodels.checkpoint.recbole import import_recbole, recbole_item_tokens
from recmodels.cli.parser import main
from recmodels.data import TEST, RecData
from recmodels.data.loaders import recbole_ml100k_folder
from recmodels.errors import InvalidArgumentError, RecModelsError
from recmodels.serving.service import RecService

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.filterwarnings("ignore::Warning:recbole.*"),  # its pandas and torch deprecations
    pytest.mark.slow,  # RecBole trains and imports
]
needs_recbole = pytest.mark.skipif(importlib.util.find_spec("recbole") is None, reason="recbole is not installed")


def assert_one_sentence(error: BaseException) -> None:
    assert isinstance(error, RecModelsError), f"untyped {type(error).__name__}: {error}"
    message = str(error)
    assert message and "\n" not in message and len(message) < 400 and "Traceback" not in message, message


def cli_refuses(capsys, *argv) -> str:
    """Run the CLI, which must exit 2 with one ``error:`` line and no traceback; returns that line."""
    capsys.readouterr()
    assert main(["import-recbole", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


class Payload:
    """Unpickling this creates ``marker``: proof that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


# ---------------------------------------------------------------------------------------------- synthetic files
class FakeConfig:
    """Pickled by reference, as RecBole's Config is: the importer only ever sees a placeholder with its state."""

    def __init__(self, values: dict):
        self.final_config_dict = values


CONFIG = {
    "model": "SASRec",
    "dataset": "ml-100k",
    "n_layers": 2,
    "n_heads": 2,
    "hidden_size": 64,
    "inner_size": 256,
    "hidden_dropout_prob": 0.5,
    "attn_dropout_prob": 0.5,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "initializer_range": 0.02,
    "loss_type": "CE",
    "MAX_ITEM_LIST_LENGTH": 50,
    "USER_ID_FIELD": "user_id",
    "ITEM_ID_FIELD": "item_id",
    "LIST_SUFFIX": "_list",
    "field_separator": "\t",
    "seq_separator": " ",
    "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
    "filter_inter_by_user_or_item": True,
}
N_TOKENS = 1683  # RecBole's ml-100k item list: 1682 items and [PAD]


def fake_state(n_tokens: int = N_TOKENS, layers: int = 2) -> dict[str, torch.Tensor]:
    """A RecBole SASRec state dict with random weights; column 0 of the item embedding holds RecBole's index."""
    state = {
        "item_embedding.weight": torch.randn(n_tokens, 64),
        "position_embedding.weight": torch.randn(50, 64),
        "LayerNorm.weight": torch.ones(64),
        "LayerNorm.bias": torch.zeros(64),
    }
    state["item_embedding.weight"][:, 0] = torch.arange(n_tokens, dtype=torch.float32)
    for i in range(layers):
        for name, shape in (
            ("multi_head_attention.query", (64, 64)),
            ("multi_head_attention.key", (64, 64)),
            ("multi_head_attention.value", (64, 64)),
            ("multi_head_attention.dense", (64, 64)),
            ("multi_head_attention.LayerNorm", (64,)),
            ("feed_forward.dense_1", (256, 64)),
            ("feed_forward.dense_2", (64, 256)),
            ("feed_forward.LayerNorm", (64,)),
        ):
            state[f"trm_encoder.layer.{i}.{name}.weight"] = torch.randn(shape) * 0.02
            state[f"trm_encoder.layer.{i}.{name}.bias"] = torch.zeros(shape[0])
    return state


def strided_state(dim: int = 64, layers: int = 2) -> dict[str, torch.Tensor]:
    """Every weight of a SASRec with ``dim`` (and ``4 * dim`` inner) as one stored value repeated by stride-0 views:
    a file of a few kB that declares the full size."""
    state = {}
    for name, tensor in fake_state(layers=layers).items():
        shape = tuple(dim if size == 64 else 4 * dim if size == 256 else size for size in tensor.shape)
        state[name] = torch.ones(1).expand(shape)
    return state


def save_fake(path: Path, config: dict | None = None, state: dict | None = None) -> Path:
    torch.save(
        {
            "config": FakeConfig({**CONFIG, **(config or {})}),
            "state_dict": fake_state() if state is None else state,
            "epoch": 3,
        },
        path,
    )
    return path


def garbage_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x04garbage that is no pickle")
        archive.writestr("archive/version", "3\n")


def test_refuses_without_trust_pickle_and_opens_nothing(tmp_path, capsys):
    marker = tmp_path / "marker"
    for name, write in (
        ("raw.pth", lambda p: p.write_bytes(pickle.dumps(Payload(marker)))),
        ("zip.pth", lambda p: torch.save({"config": Payload(marker)}, p)),
    ):
        path = tmp_path / name
        write(path)
        err = cli_refuses(capsys, path, "--out", tmp_path / "out")
        assert "--trust-pickle" in err and "pickle" in err and "run" in err
        with pytest.raises(InvalidArgumentError) as caught:
            import_recbole(path, tmp_path / "out")
        assert_one_sentence(caught.value)
    assert not marker.exists(), "a pickle was run"
    assert not (tmp_path / "out").exists()


def test_hostile_files_end_in_one_sentence(tmp_path, capsys):
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(tmp_path / "control")))
    assert (tmp_path / "control").exists(), "the payload is live: unpickling it creates its marker"
    nan_state, wide_state, short_state = fake_state(), fake_state(), fake_state()
    nan_state["trm_encoder.layer.1.feed_forward.dense_1.weight"][2, 3] = float("nan")
    wide_state["position_embedding.weight"] = torch.randn(50, 65)
    del short_state["trm_encoder.layer.1.feed_forward.LayerNorm.bias"]
    cases = {
        "missing file": (lambda p: None, "not a file"),
        "text file": (lambda p: p.write_text("user_id item_id\n"), "not a checkpoint saved by RecBole"),
        "raw pickle with a payload": (lambda p: p.write_bytes(pickle.dumps(Payload(marker))), "not a checkpoint"),
        "torch zip with a payload": (lambda p: torch.save({"weight": Payload(marker)}, p), "not a RecBole checkpoint"),
        "payload as the config": (
            lambda p: torch.save({"config": Payload(marker), "state_dict": {}}, p),
            "not a RecBole checkpoint",
        ),
        "truncated zip": (
            lambda p: p.write_bytes(save_fake(tmp_path / "whole.pth").read_bytes()[:5000]),
            "not a checkpoint saved by RecBole",
        ),
        "garbage pickle in a zip": (garbage_zip, "could not be read"),
        "another model": (lambda p: save_fake(p, {"model": "GRU4Rec"}), "only SASRec and BERT4Rec"),
        "relu": (lambda p: save_fake(p, {"hidden_act": "relu"}), "gelu"),
        "heads not dividing": (lambda p: save_fake(p, {"n_heads": 3}), "settings do not build"),
        "k-core filter": (lambda p: save_fake(p, {"user_inter_num_interval": "[5,inf)"}), "k-core"),
        "wrong item rows": (
            lambda p: save_fake(p, state={**fake_state(), "item_embedding.weight": torch.randn(900, 64)}),
            "item-embedding rows",
        ),
        "wrong shape": (lambda p: save_fake(p, state=wide_state), "shape"),
        "missing weight": (lambda p: save_fake(p, state=short_state), "lacks"),
        "NaN weight": (lambda p: save_fake(p, state=nan_state), "NaN"),
        "string setting": (lambda p: save_fake(p, {"n_layers": "2"}), "not a whole number"),
        "unknown encoding": (lambda p: save_fake(p, {"encoding": "no-such-codec"}), "encoding"),
        "separator not text": (lambda p: save_fake(p, {"field_separator": 9}), "field_separator"),
        "separator not a pattern": (lambda p: save_fake(p, {"field_separator": "[("}), "not a valid pattern"),
        "NaN layer-norm epsilon": (lambda p: save_fake(p, {"layer_norm_eps": float("nan")}), "eps of SASRecConfig"),
        "infinite initializer range": (lambda p: save_fake(p, {"initializer_range": float("inf")}), "init_std"),
        "2000 layers": (lambda p: save_fake(p, {"n_layers": 2000}, state=strided_state()), "layers of SASRecConfig"),
        "hidden size past the bound": (lambda p: save_fake(p, {"hidden_size": 16384}), "dim of SASRecConfig"),
        "stride-0 weights": (lambda p: save_fake(p, state=strided_state()), "repeats its values"),
        "huge declared size": (
            lambda p: save_fake(
                p, {"hidden_size": 4096, "inner_size": 16384, "n_layers": 48}, state=strided_state(4096, 48)
            ),
            "GiB of weights",
        ),
    }
    for label, (write, expected) in cases.items():
        path = tmp_path / f"{label.replace(' ', '_')}.pth"
        write(path)
        with pytest.raises(RecModelsError, match=expected) as caught:
            import_recbole(path, tmp_path / "out", trust_pickle=True)
        assert_one_sentence(caught.value)
        cli_refuses(capsys, path, "--out", tmp_path / "out", "--trust-pickle")
        assert not marker.exists(), f"{label}: a pickle was run"
    assert not (tmp_path / "out").exists()


def test_item_rows_follow_recboles_numbering(tmp_path, ml100k):
    """RecBole numbers ml-100k's items by first appearance in ml-100k.inter; each of our items gets its row."""
    out = tmp_path / "converted"
    summary = import_recbole(save_fake(tmp_path / "SASRec.pth"), out, trust_pickle=True)
    assert summary["items"] == summary["recbole_items"] == ml100k.dataset.n_items
    with importlib.resources.as_file(recbole_ml100k_folder()) as folder:
        lines = (folder / "ml-100k.inter").read_text().splitlines()[1:]
    first_seen = list(dict.fromkeys(line.split("\t")[1] for line in lines))
    service = RecService.from_checkpoint(out, device="cpu")
    rows = service.model.item_embedding.weight[:, 0].detach()
    expected = [0] + [first_seen.index(raw) + 1 for raw in ml100k.dataset.item_ids[1:]]
    assert rows.tolist() == expected
    assert service.config.extra["recbole_import"]["epoch"] == 3 and service.config.hparams["max_length"] == 50


# ---------------------------------------------------------------------------------------------- with RecBole
@pytest.fixture(scope="module")
def recbole():
    sys.path.insert(0, str(ROOT))
    from tools import recbole_compare, recbole_shims

    recbole_shims.install()
    from recbole.utils import get_model  # noqa: F401  (every RecBole model module, SINE's included)

    # RecBole's SINE switches anomaly detection on for the process; the shim switches it back, or every later
    # test would run its backward passes in anomaly mode
    assert not torch.is_anomaly_enabled()
    return recbole_compare


@pytest.fixture(scope="module")
def trained(recbole, ml100k, tmp_path_factory):
    """{model: (saved .pth, atomic folder)}: one RecBole epoch on the first 256 rows of each benchmark file."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a second OpenMP thread costs more than it gives when other jobs share the cores
    runs = {}
    try:
        for model in ("SASRec", "BERT4Rec"):
            workdir = tmp_path_factory.mktemp(model)
            folder = workdir / recbole.RECBOLE_DATASET
            recbole.write_benchmark(folder, ml100k, recbole.MAX_LENGTH[model], limit_rows=256)
            settings = recbole.recbole_settings(model, max_epochs=1, batch_size=256, workdir=workdir)
            runs[model] = (recbole.train_recbole(model, settings, workdir, log=lambda message: None)["saved"], folder)
    finally:
        torch.set_num_threads(threads)
    return runs


def recbole_reference(saved: str, folder: Path):
    """RecBole's own model and dataset for its checkpoint (RecBole unpickles its file itself here)."""
    from recbole.data import create_dataset
    from recbole.utils import get_model

    checkpoint = torch.load(saved, map_location="cpu", weights_only=False)
    config = checkpoint["config"]
    dataset = create_dataset(config)
    model = get_model(config["model"])(config, dataset)
    model.load_state_dict(checkpoint["state_dict"])
    assert list(recbole_item_tokens(folder, config.final_config_dict)[0]) == list(dataset.field2id_token["item_id"])
    return model.eval(), dataset.field2token_id["item_id"]


def convert_with_cli(saved: str, folder: Path, out: Path) -> RecService:
    assert main(["import-recbole", saved, "--data-dir", str(folder), "--out", str(out), "--trust-pickle"]) == 0
    return RecService.from_checkpoint(out, device="cpu")


def rank_both(service, reference, token_id, rb_history: torch.Tensor, history: torch.Tensor):
    """(RecBole's full_sort_predict, this project's scores) over this project's items."""
    from recbole.data.interaction import Interaction

    def recbole_ids(h):
        return torch.as_tensor(
            [[token_id[service.data.dataset.item_ids[i]] if i else 0 for i in row] for row in h.tolist()]
        )

    columns = recbole_ids(torch.arange(1, service.data.dataset.n_items + 1)[None])[0]
    with torch.no_grad():
        theirs = reference.full_sort_predict(
            Interaction({"item_id_list": recbole_ids(rb_history), "item_length": (rb_history != 0).sum(1)})
        )[:, columns]
        ours = service.model.score_items(
            torch.zeros(len(history), dtype=torch.long), history, torch.arange(1, service.data.dataset.n_items + 1)
        )
    return theirs, ours


@needs_recbole
def test_sasrec_scores_equal_recboles(trained, tmp_path):
    saved, folder = trained["SASRec"]
    reference, token_id = recbole_reference(saved, folder)
    service = convert_with_cli(saved, folder, tmp_path / "sasrec")
    cases = service.data.topk_cases(TEST)
    lengths = (cases.history != 0).sum(1)
    sample = np.r_[np.flatnonzero(lengths < 20)[:16], np.arange(48)]  # short histories and the first users
    history = torch.as_tensor(cases.history[sample])
    theirs, ours = rank_both(service, reference, token_id, history, history)
    assert (theirs - ours).abs().max() < 1e-4
    assert service.config.extra["recbole_import"]["items"] == service.data.dataset.n_items


@needs_recbole
def test_bert4rec_scores_equal_recboles_for_long_histories(trained, tmp_path):
    """RecBole's BERT4Rec inference drops the oldest item of the sequence it is given, ours keeps every one: for
    histories of at least MAX_ITEM_LIST_LENGTH items both read the same 50; a shorter one matches once RecBole gets
    one extra (any) item in front to drop."""
    saved, folder = trained["BERT4Rec"]
    reference, token_id = recbole_reference(saved, folder)
    service = convert_with_cli(saved, folder, tmp_path / "bert4rec")
    assert {k: service.config.hparams[k] for k in ("max_length", "mask_prob", "last_only")} == {
        "max_length": 51,
        "mask_prob": 0.2,
        "last_only": 0.5,
    }  # BERT4Rec.yaml's mask_ratio and ft_ratio
    data = service.data
    longer = RecData(data.dataset, data.split, max_history=51).topk_cases(TEST)
    cases = data.topk_cases(TEST)
    long_users = np.flatnonzero((longer.history != 0).sum(1) == 51)[:32]
    theirs, ours = rank_both(
        service,
        reference,
        token_id,
        torch.as_tensor(longer.history[long_users]),
        torch.as_tensor(cases.history[long_users]),
    )
    assert len(long_users) == 32 and (theirs - ours).abs().max() < 1e-4
    short = np.flatnonzero((cases.history != 0).sum(1) < 30)[:16]
    history = torch.as_tensor(cases.history[short])
    padded = torch.cat([torch.ones_like(history[:, :1]), history], 1)  # item 1 in front, for RecBole to drop
    theirs, ours = rank_both(service, reference, token_id, padded, history)
    assert len(short) == 16 and (theirs - ours).abs().max() < 1e-4


@needs_recbole
def test_shims_let_recbole_reload_its_own_checkpoint(recbole, trained, monkeypatch):
    """torch >= 2.6 loads weights only by default; RecBole's trainer reloads its pickled Config (shim 5), and SciPy's
    dok_matrix has its _update back (shim 3, LightGCN)."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer
    from scipy.sparse import dok_matrix

    saved, folder = trained["SASRec"]
    config = torch.load(saved, map_location="cpu", weights_only=False)["config"]
    monkeypatch.chdir(folder.parent)  # the trainer writes log_tensorboard/ here
    train, valid, _ = data_preparation(config, create_dataset(config))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(
        config, get_model(config["model"])(config, train.dataset)
    )
    assert trainer.evaluate(valid, load_best_model=True, model_file=saved)["ndcg@10"] >= 0
    matrix = dok_matrix((2, 3))
    matrix._update({(0, 2): 1.5})
    assert matrix[0, 2] == 1.5


@needs_recbole
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {
            "load_col": {
                "inter": ["user_id", "item_id", "rating", "timestamp"],
                "item": ["item_id", "movie_title"],
                "user": ["user_id"],
            }
        },
    ],
    ids=["defaults", "item-and-user-files"],
)
def test_item_numbering_matches_recboles_dataset(recbole, settings, monkeypatch):
    from recbole.config import Config
    from recbole.data import create_dataset

    monkeypatch.setattr(sys, "argv", sys.argv[:1])  # RecBole's Config reads --key=value from the command line
    config = Config(
        model="SASRec", dataset="ml-100k", config_dict={"use_gpu": False, "train_neg_sample_args": None, **settings}
    )
    dataset = create_dataset(config)
    with importlib.resources.as_file(recbole_ml100k_folder()) as folder:
        tokens, interacted = recbole_item_tokens(folder, config.final_config_dict)
    assert list(tokens) == list(dataset.field2id_token["item_id"]) and interacted[1:].all()


def test_comparison_table_goes_between_the_docs_markers(tmp_path):
    sys.path.insert(0, str(ROOT))
    from tools.recbole_compare import END, START, markdown, write_docs

    metrics = {"ndcg@10": 0.1234, "ndcg@20": 0.2, "recall@20": 0.3, "hr@10": 0.4, "mrr@10": 0.5}
    results = {
        "runs": {
            "SASRec": {
                "best_epoch": 4,
                "epochs_run": 15,
                "train_seconds": 600.0,
                "stopped_by": "early stopping",
                "settings": {"train_batch_size": 256},
                "metrics": {"valid": metrics, "test": metrics},
            }
        }
    }
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{START}\nold table\n{END}\nafter\n")
    for _ in range(2):  # writing twice leaves one table
        write_docs(readme, markdown(results, tmp_path))
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith(f"{END}\nafter\n") and "old table" not in text
    assert text.count("| SASRec | RecBole 1.2.0 | 5 of 15 | 10 | 0.1234 | 0.1234 |") == 1
    plain = tmp_path / "plain.md"
    plain.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        write_docs(plain, "table")
    assert plain.read_text() == "# no markers\n"
