"""soundalike: what sounds like this song?

The soundalike engine from Python, NumPy arrays in and out, with librosa's habits: ``sr`` arguments,
keyword options with defaults, mono float32 signals, spectrograms shaped ``(n_mels, frames)``.

- :func:`load`, :func:`get_samplerate`: decode any file the engine reads (mp3, flac, ogg, wav, m4a...).
- :func:`melspectrogram`, :func:`log_melspectrogram`: librosa's mel spectrogram, value for value.
- :class:`Model`: song vectors (``embed``, ``embed_many``) and genre predictions; the default model is
  built in, so ``Model()`` needs no path.
- :func:`analyze` (tempo, key, loudness) and :func:`tags` (the musicnn taggers' guesses) of a file.
- :class:`Store`: a library's songs, their vectors as one array, and recommendations with the command
  line's filters; :meth:`Store.embed` makes or updates one.

Errors are Python exceptions carrying the command line's messages: a missing file is
``FileNotFoundError``, a folder ``IsADirectoryError``, a file or array that is not usable audio
``ValueError`` with the reason, a wrong dtype ``TypeError``.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _soundalike as _ext

__all__ = [
    "Failure",
    "Model",
    "Recommendations",
    "Store",
    "analyze",
    "get_samplerate",
    "load",
    "log_melspectrogram",
    "melspectrogram",
    "tag_names",
    "tags",
]

__version__: str = _ext.__version__

PathLike = Union[str, "os.PathLike[str]"]

#: The sample rate the default model listens at, and ``load``'s default (librosa's too).
DEFAULT_SR = 22050


def _path(p: PathLike, what: str = "path") -> str:
    try:
        return os.path.expanduser(os.fspath(p))
    except TypeError:
        raise TypeError(f"{what} must be a str or os.PathLike, not {type(p).__name__}") from None


def _mono(y: Any, name: str = "y") -> np.ndarray:
    """``y`` as a contiguous 1-D float32 array, or a named error (dtype, shape, emptiness)."""
    a = np.asarray(y)
    if a.dtype.kind != "f":
        hint = " (integer PCM: divide by 32768 for int16)" if a.dtype.kind in "iu" else ""
        raise TypeError(f"{name} must be floating-point audio (float32 or float64), not {a.dtype}{hint}")
    if a.ndim == 2:
        raise ValueError(
            f"{name} has shape {a.shape}: soundalike takes mono audio; average the channels first "
            f"(y.mean(axis=0), as librosa.to_mono does)"
        )
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of samples, not shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: no samples")
    return np.ascontiguousarray(a, dtype=np.float32)


def _positive_sr(sr: Any) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sr must be a positive whole number of Hz, not {sr!r}")
    return int(sr)


def load(path: PathLike, sr: Optional[int] = DEFAULT_SR, *, duration: Optional[float] = None) -> np.ndarray:
    """Decode an audio file to a mono float32 signal.

    Like ``librosa.load(path, sr=sr, mono=True, duration=duration)[0]``: the channels are averaged and
    the signal is resampled to ``sr`` Hz (``None`` keeps the file's own rate: see
    :func:`get_samplerate`). Decoding is pure Rust (Symphonia), resampling is rubato's FFT resampler.

    Raises ``FileNotFoundError`` (no such file), ``IsADirectoryError`` (a folder) or ``ValueError``
    (not audio, corrupt, empty), each naming the file.
    """
    if sr is not None:
        sr = _positive_sr(sr)
    return _ext.load(_path(path), sr, duration)


def get_samplerate(path: PathLike) -> int:
    """The file's own sample rate in Hz (read from its header, nothing decoded)."""
    return _ext.get_samplerate(_path(path))


def melspectrogram(
    y: np.ndarray,
    sr: int = DEFAULT_SR,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: Optional[float] = None,
    power: float = 2.0,
) -> np.ndarray:
    """Mel power spectrogram of a mono signal, ``(n_mels, 1 + len(y) // hop_length)`` float32.

    librosa's ``feature.melspectrogram`` with its defaults: ``center=True`` with zero padding, a
    periodic Hann window of ``n_fft``, power 2 and Slaney mel filters with Slaney normalisation;
    compare the two value for value. Only ``power=2.0`` is computed.
    """
    if power != 2.0:
        raise ValueError(f"power={power}: only the power spectrogram (power=2.0, librosa's default) is computed")
    return _ext.melspectrogram(_mono(y), _positive_sr(sr), n_fft, hop_length, n_mels, float(fmin), None if fmax is None else float(fmax))


def log_melspectrogram(
    y: np.ndarray,
    sr: int = DEFAULT_SR,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: Optional[float] = None,
    top_db: Optional[float] = 80.0,
) -> np.ndarray:
    """Log-mel spectrogram in dB: ``librosa.power_to_db(melspectrogram(y, sr, ...), ref=1.0,
    top_db=top_db)``, what the model reads (with the default settings)."""
    return _ext.log_melspectrogram(
        _mono(y), _positive_sr(sr), n_fft, hop_length, n_mels, float(fmin), None if fmax is None else float(fmax), None if top_db is None else float(top_db)
    )


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _signal(x: Any, sr: Optional[int], what: str) -> Tuple[np.ndarray, int]:
    """An array argument and its rate (``sr`` is required: there is no model rate to assume here)."""
    if sr is None:
        raise ValueError(f"{what} of an array needs its sample rate: {what}(y, sr=22050)")
    return _mono(x), _positive_sr(sr)


def analyze(x: Union[PathLike, np.ndarray], sr: Optional[int] = None) -> Dict[str, Any]:
    """Tempo (BPM with its octave candidates, or why there is none), key (Camelot, Open Key, name,
    strength) and loudness (EBU R128 LUFS, sample and true peak) of a file, as ``soundalike analyze --json`` gives them,
    or of a mono signal at ``sr`` Hz (its loudness is then that of the one channel)."""
    if _is_path(x):
        if sr is not None:
            raise ValueError("sr is for arrays: a file is decoded at its own rate")
        return json.loads(_ext.analyze(_path(x)))
    return json.loads(_ext.analyze_samples(*_signal(x, sr, "analyze")))


def tags(x: Union[PathLike, np.ndarray], sr: Optional[int] = None, *, top: int = 10, patches: Optional[int] = None) -> Dict[str, Any]:
    """What the musicnn taggers (MSD and MagnaTagATune models, 50 tags each) guess about a file or a
    mono signal at ``sr`` Hz: the ``top`` most probable tags, and every tag's probability per tagger.
    These are a tagger's guesses, each with its probability, not facts. ``patches``: 3-s patches read
    (``None``: what ``embed`` stores, one per 7.5 s, at most 6; ``0``: every patch, as the musicnn
    package does)."""
    if patches is not None and patches < 0:
        raise ValueError("patches must be None, 0 (all) or a positive number")
    if _is_path(x):
        if sr is not None:
            raise ValueError("sr is for arrays: a file is decoded at its own rate")
        return json.loads(_ext.tags(_path(x), top, patches))
    y, rate = _signal(x, sr, "tags")
    return json.loads(_ext.tags_samples(y, rate, top, patches))


def tag_names() -> List[str]:
    """The 100 tags the taggers know."""
    return list(_ext.tag_names())


class Failure(NamedTuple):
    """A file :meth:`Model.embed_many` could not embed: its row, its path and why."""

    index: int
    path: str
    reason: str


class Model:
    """A soundalike model: song vectors (128-d, unit length) and genre predictions.

    ``Model()`` is the default model, built into the package; ``Model(path)`` loads a model folder
    that ``soundalike train`` wrote.
    """

    def __init__(self, path: Optional[PathLike] = None) -> None:
        self._m = _ext.Model(None if path is None else _path(path))

    name = property(lambda self: self._m.name, doc="The model's name.")
    fingerprint = property(lambda self: self._m.fingerprint, doc="The fingerprint of its weights (stamped into every store it makes).")
    labels = property(lambda self: list(self._m.labels), doc="Its genre labels, in the order of predict_proba.")
    sr = property(lambda self: self._m.sr, doc="The sample rate it listens at (arrays at another rate are resampled).")
    dim = property(lambda self: self._m.dim, doc="The length of a song vector.")
    path = property(lambda self: self._m.path, doc="The folder it was loaded from (None for the built-in default).")

    def __repr__(self) -> str:
        where = "built-in" if self.path is None else repr(str(self.path))
        return f"soundalike.Model({self.name!r}, {where}, fingerprint={self.fingerprint!r})"

    def _run(self, x: Any, sr: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
        if isinstance(x, (str, os.PathLike)):
            if sr is not None:
                raise ValueError("sr is for arrays: a file is decoded at its own rate and resampled as needed")
            return self._m.embed_file(_path(x))
        y = _mono(x, "x")
        rate = self.sr if sr is None else _positive_sr(sr)
        if rate != self.sr:
            warnings.warn(f"audio at {rate} Hz resampled to {self.sr} Hz, the rate the model was trained at", stacklevel=3)
        return self._m.embed_samples(y, rate)

    def embed(self, x: Union[PathLike, np.ndarray], sr: Optional[int] = None) -> np.ndarray:
        """The song vector ``(dim,)`` of a file or a mono signal: the mean of its tiles' embeddings,
        unit length, exactly what ``soundalike embed`` stores for the file.

        ``sr`` is the rate of an array (default: :attr:`sr`, 22050 Hz); an array at another rate is
        resampled, with a warning.
        """
        return self._run(x, sr)[0]

    def embed_many(self, paths: Sequence[PathLike], threads: Optional[int] = None) -> Tuple[np.ndarray, List[Failure]]:
        """Embed many files in parallel (``threads``: all cores when ``None``), without the GIL.

        Returns ``(vectors, failures)``: ``vectors`` is ``(len(paths), dim)`` with row ``i`` for
        ``paths[i]``; a file that could not be embedded leaves a row of NaN and a :class:`Failure`
        naming it and the reason. The same files give the same vectors whatever ``threads`` is.
        """
        if isinstance(paths, (str, os.PathLike)):
            raise TypeError("embed_many takes a list of paths (use embed for one file)")
        vectors, failures = self._m.embed_many([_path(p) for p in paths], threads)
        return vectors, [Failure(i, os.fspath(p), why) for i, p, why in failures]

    def predict_proba(self, x: Union[PathLike, np.ndarray], sr: Optional[int] = None) -> np.ndarray:
        """The mean of the tiles' genre probabilities, in the order of :attr:`labels`."""
        return self._run(x, sr)[1]

    def predict(self, x: Union[PathLike, np.ndarray], sr: Optional[int] = None) -> Tuple[str, float]:
        """``(genre, probability)``: the model's most probable genre for a file or a signal."""
        p = self.predict_proba(x, sr)
        i = int(np.argmax(p))
        return self.labels[i], float(p[i])


class _ClassOrInstance:
    """A method that is one function on the class and another on an instance: ``Store.embed(library,
    path)`` makes or updates the store at ``path``; ``store.embed(library)`` updates ``store`` itself."""

    def __init__(self, on_class: Callable[..., Any], on_instance: Callable[..., Any]) -> None:
        self.on_class, self.on_instance = on_class, on_instance
        self.__doc__ = f"{on_class.__doc__}\n\n        On a store: {on_instance.__doc__}"

    def __get__(self, obj: Any, cls: Any = None) -> Callable[..., Any]:
        if obj is None:
            return self.on_class.__get__(cls, cls)
        return self.on_instance.__get__(obj, cls)


class Recommendations(list):
    """The songs a query returns (dicts, best first), with ``notes`` saying what the filters left out
    (songs without a tempo, a key or tags yet)."""

    notes: List[str]

    def __init__(self, results: List[Dict[str, Any]], notes: List[str]) -> None:
        super().__init__(results)
        self.notes = notes


_FILTERS = (
    "genre",
    "same_genre",
    "exclude_same_artist",
    "exclude_same_group",
    "max_per_album",
    "bpm",
    "bpm_near",
    "bpm_fold",
    "key",
    "key_compatible",
    "key_rule",
    "tags",
    "tag_min",
    "same_cluster",
    "cluster",
)


class Store:
    """A store that ``soundalike embed`` (or :meth:`Store.embed`) made: songs, vectors, recommendations.

    Opening reads it and never writes it. ``genre_source`` says where a song's genre comes from for the
    ``genre``/``same_genre`` filters and the results: ``"tag"`` (the file's genre tag or the labels
    CSV), ``"predicted"`` (the model), ``"either"`` (the tag, else the prediction) or ``"tags"`` (the
    musicnn tagger's most probable genre tag). ``model`` embeds the files given to ``query(file=...)``
    (default: the built-in model, which must be the one that made the store).
    """

    def __init__(self, path: PathLike, *, model: Optional[Model] = None, exact: bool = False, genre_source: str = "either") -> None:
        self._s = _ext.Store(_path(path), exact, genre_source)
        self._model = model
        #: The report of the :meth:`embed` that returned this store (``None`` when opened directly).
        self.report: Optional[Dict[str, Any]] = None

    def __len__(self) -> int:
        return len(self._s)

    def __repr__(self) -> str:
        return f"soundalike.Store({str(self.path)!r}, {len(self)} songs, model={self.model_name!r})"

    path = property(lambda self: self._s.path, doc="The store's folder.")
    library = property(lambda self: self._s.library, doc="The library folder it was made from.")
    model_name = property(lambda self: self._s.model_name, doc="The name of the model that made it.")
    model_fingerprint = property(lambda self: self._s.model_fingerprint, doc="The fingerprint of the model that made it.")

    @property
    def ids(self) -> List[str]:
        """The songs' ids (paths relative to the library), in the row order of :meth:`vectors`."""
        return self._s.ids

    def vectors(self) -> np.ndarray:
        """Every song vector, ``(len(self), dim)`` float32, rows in the order of :attr:`ids`; read-only,
        and a view of the store's own memory (no copy) when it holds them as one matrix."""
        return self._s.vectors()

    @property
    def n_clusters(self) -> Optional[int]:
        """How many clusters ``soundalike clusters`` fitted (``None`` before it ran)."""
        return self._s.n_clusters

    def songs(self) -> List[Dict[str, Any]]:
        """Every song as a dict (title, artist, album, genre, tempo, key, loudness, top tags...), in the
        row order of :meth:`vectors`: ``pandas.DataFrame(store.songs())`` is the library as a table."""
        return json.loads(self._s.songs())

    def song(self, query: str) -> Dict[str, Any]:
        """One song (title, artist, genre, tempo, key, tags...) by id, path or text."""
        return json.loads(self._s.song(query))

    def _file_model(self) -> Model:
        m = self._model if self._model is not None else Model()
        if m.fingerprint != self.model_fingerprint:
            raise ValueError(
                f"model {m.name} ({m.fingerprint}) is not the one that made this store ({self.model_name} "
                f"{self.model_fingerprint}); vectors would not be comparable: pass model=soundalike.Model(PATH)"
            )
        return m

    def query(
        self,
        song: Union[str, Sequence[str], None] = None,
        file: Optional[PathLike] = None,
        *,
        vector: Optional[np.ndarray] = None,
        k: int = 10,
        **filters: Any,
    ) -> Recommendations:
        """The ``k`` songs that sound most like ``song`` (an id, a path or text matched against title
        and artist; a list for a playlist), a new ``file``, or a ``vector``: cosine similarity, exactly
        as ``soundalike query``.

        Filters, as the command line's flags: ``genre="rock"``, ``same_genre=True``,
        ``exclude_same_artist=True``, ``exclude_same_group=True``, ``max_per_album=2``,
        ``bpm=(120, 128)`` or ``"120-128"``, ``bpm_near=6`` (percent around the query's tempo),
        ``bpm_fold=True`` (half/double tempo count), ``key="8A"``, ``key_compatible=True``,
        ``key_rule="wide"``, ``tags=["piano"]`` (all of them), ``tag_min=0.2``, ``same_cluster=True``,
        ``cluster=3`` (also without a song: the songs nearest that cluster's centre).
        Returns :class:`Recommendations`: dicts with ``rank``, ``score`` and the song.
        """
        unknown = sorted(set(filters) - set(_FILTERS))
        if unknown:
            raise TypeError(f"query() got unknown filters {unknown}; the filters are {list(_FILTERS)}")
        songs = [] if song is None else [song] if isinstance(song, str) else list(song)
        vectors = []
        if file is not None:
            vectors.append(self._file_model().embed(file))
        if vector is not None:
            v = np.asarray(vector, dtype=np.float32)
            if v.ndim != 1:
                raise ValueError(f"vector must be 1-D, not shape {v.shape}")
            vectors.append(v)
        bpm = filters.get("bpm")
        if isinstance(bpm, (tuple, list)):
            if len(bpm) != 2:
                raise ValueError(f"bpm=(low, high), not {bpm!r}")
            filters["bpm"] = f"{bpm[0]}-{bpm[1]}"
        elif isinstance(bpm, (int, float)):
            filters["bpm"] = str(bpm)
        t = filters.get("tags")
        if isinstance(t, str):
            filters["tags"] = [t]
        answer = json.loads(self._s.query(songs, [v.tolist() for v in vectors], k, **filters))
        return Recommendations(answer["results"], answer["notes"])

    def _embed_into(
        cls,
        library: PathLike,
        path: PathLike,
        *,
        model: Optional[Model] = None,
        tags: bool = True,
        index: bool = True,
        batch: int = 16,
        prune: bool = False,
        labels: Optional[PathLike] = None,
        progress: Optional[Callable[[str, int, int], Any]] = None,
    ) -> Store:
        """Embed every song of ``library`` into the store at ``path`` (made if new) and open it:
        ``soundalike embed LIBRARY --out PATH``, with the same rules. Unchanged songs are kept, new
        and changed ones embedded in parallel, songs whose files are gone removed (more than 20% of
        the store only with ``prune=True``), files that fail listed in ``store.report["failed"]``.

        ``progress(stage, done, total)`` is called after each batch of ``batch`` songs, once they are
        safely in the store; if it raises (or Ctrl-C is pressed), embedding stops there and the
        exception propagates: the next run goes on from where this one stopped.
        """
        m = model if model is not None else Model()
        report = json.loads(
            m._m.embed_library(
                _path(library, "library"), _path(path), tags, index, batch, prune, None if labels is None else _path(labels, "labels"), progress
            )
        )
        store = cls(path, model=m)
        store.report = report
        return store

    def _embed_here(
        self,
        library: Optional[PathLike] = None,
        *,
        tags: bool = True,
        index: bool = True,
        batch: int = 16,
        prune: bool = False,
        labels: Optional[PathLike] = None,
        progress: Optional[Callable[[str, int, int], Any]] = None,
    ) -> "Store":
        """Bring this store up to date with ``library`` (default: the library it was made from), as
        ``Store.embed(library, store.path)`` does, and reread it; returns the store."""
        fresh = type(self)._embed_into(
            type(self), self.library if library is None else library, self.path, model=self._model, tags=tags, index=index,
            batch=batch, prune=prune, labels=labels, progress=progress,
        )
        self._s, self._model, self.report = fresh._s, fresh._model, fresh.report
        return self

    embed = _ClassOrInstance(_embed_into, _embed_here)
