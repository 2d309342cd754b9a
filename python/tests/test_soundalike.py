"""The Python package against the command line, librosa and bad input, on the real clips committed in
tests/data (see datasets/tiny/ATTRIBUTION.md). Run by .ci/run against the built wheel:

    python -m pytest python/tests

The command-line comparisons need the `soundalike` binary ($SOUNDALIKE_BIN, else target/debug or
target/release); librosa's comparison needs librosa. Without them those tests skip with a message,
unless SOUNDALIKE_PY_REQUIRE=1 (as in CI), where they fail instead.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import soundalike

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
REQUIRE = os.environ.get("SOUNDALIKE_PY_REQUIRE") == "1"


def need(what, found):
    if not found:
        if REQUIRE:
            pytest.fail(f"{what} is required (SOUNDALIKE_PY_REQUIRE=1) but was not found")
        pytest.skip(f"{what} not found")


def cli():
    for c in [os.environ.get("SOUNDALIKE_BIN"), ROOT / "target/debug/soundalike", ROOT / "target/release/soundalike"]:
        if c and Path(c).is_file():
            return str(c)
    need("the soundalike binary (cargo build)", False)


@pytest.fixture(scope="module")
def model():
    return soundalike.Model()


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A small library of real clips in two folders, with a file that is not audio."""
    lib = tmp_path_factory.mktemp("lib")
    for sub, names in {"a": ["clip.mp3", "vbr_44k.mp3", "ref_a_22k.wav"], "b": ["stereo_48k_320k.mp3", "ref_b_22k.wav", "tagged.ogg"]}.items():
        (lib / sub).mkdir()
        for n in names:
            shutil.copy(DATA / n, lib / sub / n)
    (lib / "b" / "notes.mp3").write_text("not audio at all")
    return lib


# --- the front end ------------------------------------------------------------------------------


def test_load_gives_mono_float32_at_the_asked_rate():
    y = soundalike.load(DATA / "ref_c_44k_stereo.wav")
    native = soundalike.load(DATA / "ref_c_44k_stereo.wav", sr=None)
    assert soundalike.get_samplerate(DATA / "ref_c_44k_stereo.wav") == 44100
    assert y.dtype == np.float32 and y.ndim == 1 and native.ndim == 1
    assert abs(len(y) / 22050 - len(native) / 44100) < 1e-3
    cut = soundalike.load(DATA / "clip.mp3", duration=2.0)
    assert abs(len(cut) - 2 * 22050) <= 1152  # an mp3 frame


def test_melspectrogram_equals_librosa_value_for_value():
    librosa = pytest.importorskip("librosa") if not REQUIRE else __import__("librosa")
    for clip in ["ref_a_22k.wav", "ref_b_22k.wav"]:
        y = soundalike.load(DATA / clip)
        ours = soundalike.melspectrogram(y, sr=22050)
        theirs = librosa.feature.melspectrogram(y=y.astype(np.float64), sr=22050)
        assert ours.shape == theirs.shape
        # In dB above librosa's 80-dB floor, the tolerance the Rust front-end tests use (0.05 dB).
        o, t = 10 * np.log10(np.maximum(ours, 1e-10)), 10 * np.log10(np.maximum(theirs, 1e-10))
        keep = t > t.max() - 80
        assert keep.mean() > 0.5
        assert np.abs(o - t)[keep].max() <= 0.05, clip
        db = soundalike.log_melspectrogram(y, sr=22050)
        ref = librosa.power_to_db(theirs, ref=1.0, top_db=80.0)
        assert np.abs(db - ref)[keep].max() <= 0.05


def test_melspectrogram_matches_the_committed_librosa_reference_and_takes_float64():
    y = soundalike.load(DATA / "ref_a_22k.wav")
    want = np.load(DATA / "reference" / "ref_a_22k.logmel.npy")
    got = soundalike.log_melspectrogram(y.astype(np.float64))
    keep = want > want.max() - 80 + 1e-3
    assert got.shape == want.shape
    assert np.abs(got - want)[keep].max() <= 0.05
    other = soundalike.melspectrogram(y, sr=22050, n_fft=1024, hop_length=256, n_mels=64, fmax=8000.0)
    assert other.shape == (64, 1 + len(y) // 256)


# --- the model ----------------------------------------------------------------------------------


def test_built_in_model_embeds_a_file_and_its_samples_alike(model):
    assert model.path is None and model.dim == 128 and model.sr == 22050
    v = model.embed(DATA / "clip.mp3")
    assert v.shape == (128,) and v.dtype == np.float32
    assert abs(np.linalg.norm(v) - 1) < 1e-5
    # load() at the model's rate is exactly what the file path decodes.
    np.testing.assert_array_equal(model.embed(soundalike.load(DATA / "clip.mp3")), v)
    genre, p = model.predict(DATA / "clip.mp3")
    probs = model.predict_proba(DATA / "clip.mp3")
    assert genre in model.labels and probs.shape == (len(model.labels),)
    assert abs(probs.sum() - 1) < 1e-4 and p == pytest.approx(probs.max())


def test_a_model_folder_loads_the_same_as_the_built_in_one(model):
    m = soundalike.Model(ROOT / "models" / "default")
    assert m.fingerprint == model.fingerprint and m.path is not None
    np.testing.assert_array_equal(m.embed(DATA / "vbr_44k.mp3"), model.embed(DATA / "vbr_44k.mp3"))


def test_embed_many_is_the_same_on_any_number_of_threads_and_names_failures(model, tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    files = [DATA / "clip.mp3", DATA / "missing.mp3", DATA / "ogg_named.mp3", empty, DATA / "stereo_48k_320k.mp3", DATA, DATA / "silence.mp3"]
    one, f1 = model.embed_many(files, threads=1)
    two, f2 = model.embed_many(files, threads=2)
    every, _ = model.embed_many(files)
    assert one.shape == (len(files), 128)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, every)
    assert f1 == f2
    failed = {f.index: f for f in f1}
    assert set(failed) == {1, 3, 5, 6}
    assert "missing.mp3" in failed[1].reason and "empty" in failed[3].reason
    assert "folder" in failed[5].reason and "silence" in failed[6].reason
    assert np.isnan(one[1]).all() and np.isfinite(one[0]).all()
    np.testing.assert_array_equal(one[0], model.embed(DATA / "clip.mp3"))


def test_vectors_equal_the_command_lines(model, library, tmp_path):
    exe = cli()
    out = tmp_path / "cli-store"
    r = subprocess.run([exe, "embed", str(library), "--out", str(out), "--tags", "false", "--model", str(ROOT / "models/default")], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr  # notes.mp3 fails, the rest is embedded
    store = soundalike.Store(out)
    assert len(store) == 6
    mine, failures = model.embed_many([library / i for i in store.ids])
    assert failures == []
    np.testing.assert_allclose(store.vectors(), mine, atol=1e-6)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, error, words",
    [
        (DATA / "missing.mp3", FileNotFoundError, "missing.mp3"),
        (DATA, IsADirectoryError, "folder"),
        (ROOT / "README.md", ValueError, "not a supported audio file"),
        (DATA / "silence.mp3", ValueError, "silence"),
    ],
)
def test_bad_files_raise_named_exceptions(model, path, error, words):
    with pytest.raises(error, match=words):
        model.embed(path)
    if words != "silence":  # silence decodes: it is the model that has nothing to listen to
        with pytest.raises(error, match=words):
            soundalike.load(path)


def test_truncated_and_empty_files_raise_value_error(model, tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        model.embed(empty)
    short = tmp_path / "half.mp3"
    short.write_bytes((DATA / "half_second.mp3").read_bytes())
    with pytest.raises(ValueError, match="too short"):
        model.embed(short)


@pytest.mark.parametrize(
    "y, error, words",
    [
        (np.zeros(0, dtype=np.float32), ValueError, "empty"),
        (np.zeros((2, 22050), dtype=np.float32), ValueError, "mono"),
        (np.zeros((1, 2, 3), dtype=np.float32), ValueError, "1-D"),
        (np.array([0.1, np.nan] * 22050, dtype=np.float32), ValueError, "not finite"),
        (np.array([0.1, np.inf] * 22050, dtype=np.float64), ValueError, "not finite"),
        (np.ones(44100, dtype=np.int16), TypeError, "int16"),
        (np.array(["a", "b"]), TypeError, "floating-point"),
        (np.zeros(44100, dtype=np.float32), ValueError, "silence"),
        (np.full(1000, 0.1, dtype=np.float32), ValueError, "too short"),
    ],
)
def test_bad_arrays_raise_named_exceptions(model, y, error, words):
    with pytest.raises(error, match=words):
        model.embed(y)


def test_bad_arrays_for_the_spectrogram():
    with pytest.raises(ValueError, match="not finite"):
        soundalike.melspectrogram(np.array([np.nan] * 4096, dtype=np.float32))
    with pytest.raises(ValueError, match="n_fft"):
        soundalike.melspectrogram(np.ones(4096, dtype=np.float32), n_fft=8)
    with pytest.raises(ValueError, match="sr"):
        soundalike.melspectrogram(np.ones(4096, dtype=np.float32), sr=0)
    with pytest.raises(ValueError, match="power"):
        soundalike.melspectrogram(np.ones(4096, dtype=np.float32), power=1.0)


def test_an_array_at_another_rate_is_resampled_and_said_so(model):
    y44 = soundalike.load(DATA / "ref_c_44k_stereo.wav", sr=44100)
    with pytest.warns(UserWarning, match="resampled to 22050"):
        v = model.embed(y44, sr=44100)
    # The same as the file, which the decoder resamples with the same resampler.
    np.testing.assert_allclose(v, model.embed(DATA / "ref_c_44k_stereo.wav"), atol=1e-5)


def test_models_that_are_not_there():
    with pytest.raises(FileNotFoundError):
        soundalike.Model("/no/such/model")
    with pytest.raises(ValueError, match="folder"):
        soundalike.Model(ROOT / "README.md")


# --- tempo, key and tags ------------------------------------------------------------------------


def test_analyze_and_tags_give_the_command_lines_answers():
    exe = cli()
    a = soundalike.analyze(DATA / "clip.mp3")
    cli_a = json.loads(subprocess.run([exe, "analyze", "--json", str(DATA / "clip.mp3")], capture_output=True, text=True, check=True).stdout)
    assert a == cli_a
    t = soundalike.tags(DATA / "clip.mp3", top=5)
    cli_t = json.loads(subprocess.run([exe, "tags", "--json", "--top", "5", str(DATA / "clip.mp3")], capture_output=True, text=True, check=True).stdout)
    assert t == cli_t
    assert len(t["top"]) == 5 and set(t["msd"]) | set(t["mtt"]) == set(soundalike.tag_names())
    with pytest.raises(FileNotFoundError):
        soundalike.tags(DATA / "missing.mp3")


# --- stores -------------------------------------------------------------------------------------


def test_store_embed_query_and_vectors(library, tmp_path, model):
    seen = []
    store = soundalike.Store.embed(library, tmp_path / "store", model=model, tags=True, batch=2, progress=lambda *a: seen.append(a))
    assert len(store) == 6 and store.report["embedded"] == 6
    assert [f["path"] for f in store.report["failed"]] == ["b/notes.mp3"]
    assert seen and seen[-1] == ("embedding", 7, 7)
    v = store.vectors()
    assert v.shape == (6, 128) and not v.flags.writeable
    assert v.base is not None  # a view of the store's matrix, not a copy
    np.testing.assert_allclose(v[store.ids.index("a/clip.mp3")], model.embed(library / "a/clip.mp3"), atol=1e-6)
    recs = store.query(song="a/clip.mp3", k=3)
    assert len(recs) == 3 and all(r["id"] != "a/clip.mp3" for r in recs)
    assert [r["rank"] for r in recs] == [1, 2, 3]
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    # The nearest is the song whose vector has the largest dot product with the query's.
    q = v[store.ids.index("a/clip.mp3")]
    dots = {i: float(v[n] @ q) for n, i in enumerate(store.ids) if i != "a/clip.mp3"}
    assert recs[0]["id"] == max(dots, key=dots.get)
    # A new file: the same answer as its own vector.
    by_file = store.query(file=DATA / "vbr_44k.mp3", k=2)
    by_vec = store.query(vector=model.embed(DATA / "vbr_44k.mp3"), k=2)
    assert [r["id"] for r in by_file] == [r["id"] for r in by_vec]
    # Filters: tags and tempo leave out what does not pass, and say why when songs lack the value.
    top = store.song("a/clip.mp3")["tags"][0]["tag"]
    tagged = store.query(song="a/clip.mp3", k=6, tags=[top], tag_min=0.0)
    assert len(tagged) == 5
    other = next(i for i in store.ids if i != "a/clip.mp3" and store.song(i).get("bpm"))
    bpm = store.song(other)["bpm"]
    near = store.query(song="a/clip.mp3", k=6, bpm=(bpm - 1, bpm + 1))
    assert all(abs(r["bpm"] - bpm) <= 1.01 for r in near) and other in [r["id"] for r in near]
    without = sum(1 for i in store.ids if i != "a/clip.mp3" and not store.song(i).get("bpm"))
    assert (without > 0) == any("tempo" in n for n in near.notes)
    # A second run changes nothing.
    again = soundalike.Store.embed(library, tmp_path / "store", model=model)
    assert again.report["embedded"] == 0 and again.report["unchanged"] == 6


def test_a_progress_callback_that_raises_stops_and_the_next_run_goes_on(library, tmp_path, model):
    calls = []

    def stop(stage, done, total):
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        soundalike.Store.embed(library, tmp_path / "s", model=model, tags=False, batch=2, progress=stop)
    assert calls == [2]
    kept = soundalike.Store(tmp_path / "s")
    assert len(kept) == 2
    done = soundalike.Store.embed(library, tmp_path / "s", model=model, tags=False)
    assert len(done) == 6 and done.report["embedded"] == 4 and done.report["unchanged"] == 2


def test_store_errors(library, tmp_path, model):
    with pytest.raises(FileNotFoundError, match="no such store"):
        soundalike.Store(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="library"):
        soundalike.Store.embed(tmp_path / "no-library", tmp_path / "x", model=model)
    store = soundalike.Store.embed(library, tmp_path / "s2", model=model, tags=False)
    with pytest.raises(TypeError, match="unknown filters"):
        store.query(song="a/clip.mp3", colour="red")
    with pytest.raises(ValueError, match="no song matches"):
        store.query(song="zzzz-no-such-song")
    with pytest.raises(ValueError, match="key"):
        store.query(song="a/clip.mp3", key="H#")
    with pytest.raises(ValueError, match="closest"):
        store.query(song="a/clip.mp3", tags=["pianno"])
    with pytest.raises(ValueError, match="say what to match"):
        store.query()
    untagged = store.query(song="a/clip.mp3", tags=["piano"])
    assert untagged == [] and any("tag" in n for n in untagged.notes)


def test_arrays_get_the_files_tempo_key_loudness_and_tags():
    # A mono file at 22050 Hz decodes to exactly the signal load() returns: the same analysis.
    path = DATA / "ref_a_22k.wav"
    y = soundalike.load(path)
    a, b = soundalike.analyze(path), soundalike.analyze(y, sr=22050)
    for k in ["bpm", "key", "lufs", "peak_db", "true_peak_db"]:
        assert a[k] == b[k], k
    t, u = soundalike.tags(path), soundalike.tags(y, sr=22050)
    assert [x["tag"] for x in t["top"]] == [x["tag"] for x in u["top"]]
    assert max(abs(t["msd"][k] - u["msd"][k]) for k in t["msd"]) <= 1e-4
    with pytest.raises(ValueError, match="sample rate"):
        soundalike.tags(y)
    with pytest.raises(ValueError, match="not finite"):
        soundalike.analyze(np.full(44100, np.nan, dtype=np.float32), sr=22050)
    with pytest.raises(ValueError, match="silence"):
        soundalike.tags(np.zeros(44100, dtype=np.float32), sr=22050)


def test_songs_and_clusters(library, tmp_path, model):
    store = soundalike.Store.embed(library, tmp_path / "c", model=model, tags=False)
    songs = store.songs()
    assert [s["id"] for s in songs] == store.ids and all(s["title"] for s in songs)
    assert store.n_clusters is None
    with pytest.raises(ValueError, match="no clusters yet"):
        store.query(song="a/clip.mp3", same_cluster=True)
    subprocess.run([cli(), "clusters", str(tmp_path / "c"), "--k", "2", "--no-plots"], check=True, capture_output=True)
    store = soundalike.Store(tmp_path / "c")
    assert store.n_clusters == 2
    mine = store.song("a/clip.mp3")["cluster"]
    same = store.query(song="a/clip.mp3", k=6, same_cluster=True)
    members = [s["id"] for s in store.songs() if s["cluster"] == mine and s["id"] != "a/clip.mp3"]
    assert sorted(r["id"] for r in same) == sorted(members)
    only = store.query(cluster=1 - mine, k=6)
    assert only and all(r["cluster"] == 1 - mine for r in only)
    with pytest.raises(ValueError, match="clusters 0 to 1"):
        store.query(cluster=5)


def test_a_store_updates_itself_from_its_library(tmp_path, model):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(DATA / "clip.mp3", lib / "one.mp3")
    shutil.copy(DATA / "vbr_44k.mp3", lib / "two.mp3")
    store = soundalike.Store.embed(lib, tmp_path / "s", model=model, tags=False)
    assert len(store) == 2 and store.report["embedded"] == 2
    shutil.copy(DATA / "stereo_48k_320k.mp3", lib / "three.mp3")
    stages = []
    same = store.embed(tags=False, progress=lambda *a: stages.append(a))  # the library it was made from
    assert same is store and len(store) == 3
    assert store.report["embedded"] == 1 and store.report["unchanged"] == 2
    assert stages[-1] == ("embedding", 1, 1)
    assert "three.mp3" in store.ids and store.vectors().shape == (3, 128)
    assert "On a store" in soundalike.Store.__dict__["embed"].__doc__
