//! `soundalike._soundalike`: the engine for Python (PyO3, abi3), NumPy arrays in and out. The Python
//! package `soundalike` (python/soundalike) wraps these functions with the ecosystem's habits (keyword
//! options, path-likes, dicts) and documents them; everything here releases the GIL while it works.
//!
//! Every file read goes through the same code as the command line (`soundalike::commands`), so a vector,
//! a tag or an error message is the same from both.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use numpy::ndarray::{Array2, ArrayView2};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyFileNotFoundError, PyIsADirectoryError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use soundalike::commands::embed::{embed_library, EmbedArgs, Progress};
use soundalike::flags::LabelArgs;
use soundalike_audio::{AudioError, FrontendConfig, LogMel, MelStream};
use soundalike_model::{Device, LoadedModel};
use soundalike_recommend::{Around, BpmRange, CamelotKey, Catalog, ClusterScope, GenreSource, KeyRule, Method, Request};

/// The model that ships in `models/default`, built into the extension so `Model()` needs no path.
static DEFAULT_CONFIG: &[u8] = include_bytes!("../../../models/default/config.json");
static DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../../models/default/model.bpk");

/// The message for a path that is a folder where an audio file was asked for.
fn folder(p: &Path) -> String {
    format!("{}: is a folder, not an audio file", p.display())
}

/// A Python exception for a front-end error: a missing file is `FileNotFoundError`, a folder
/// `IsADirectoryError`, another failed read `OSError`, a file that is not usable audio `ValueError`;
/// the message is the command line's, naming the file.
fn audio_err(e: AudioError) -> PyErr {
    let msg = e.to_string();
    audio_class(&e, msg)
}

/// [`audio_err`]'s class for `e`, carrying `msg` (the error with whatever context was added to it).
fn audio_class(e: &AudioError, msg: String) -> PyErr {
    match e {
        AudioError::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        AudioError::Io { path, .. } if path.is_dir() => PyIsADirectoryError::new_err(folder(path)),
        AudioError::Io { .. } | AudioError::Write { .. } => PyOSError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// An error of the library below (a store, a model, a query): an audio error as [`audio_err`], a
/// missing file or folder as `FileNotFoundError`, a request the library refuses as `ValueError`,
/// anything else (a store another process is writing, a damaged file) as `RuntimeError`.
fn any_err(e: anyhow::Error) -> PyErr {
    let msg = format!("{e:#}");
    if let Some(a) = e.downcast_ref::<AudioError>() {
        return audio_class(a, msg);
    }
    if e.downcast_ref::<soundalike_recommend::LibraryError>().is_some() {
        return PyValueError::new_err(msg);
    }
    if let Some(soundalike_model::ModelError::NotFound(_)) = e.downcast_ref::<soundalike_model::ModelError>() {
        return PyFileNotFoundError::new_err(msg);
    }
    if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)) {
        return PyFileNotFoundError::new_err(msg);
    }
    PyRuntimeError::new_err(msg)
}

/// Refuses a path that is missing or a folder before anything is decoded.
fn audio_path(p: &Path) -> PyResult<()> {
    if p.is_dir() {
        return Err(PyIsADirectoryError::new_err(folder(p)));
    }
    if !p.exists() {
        return Err(PyFileNotFoundError::new_err(format!("{}: no such file", p.display())));
    }
    Ok(())
}

/// The samples of an array, refused when empty or not finite (the message says which sample).
fn finite_samples<'a>(y: &'a PyReadonlyArray1<'_, f32>) -> PyResult<&'a [f32]> {
    let s = y.as_slice().map_err(|_| PyValueError::new_err("y must be a contiguous 1-D array"))?;
    if s.is_empty() {
        return Err(PyValueError::new_err("y is empty: no samples"));
    }
    if let Some(i) = s.iter().position(|v| !v.is_finite()) {
        return Err(PyValueError::new_err(format!("y is not finite: sample {i} is {}", s[i])));
    }
    Ok(s)
}

/// A front end with librosa's `melspectrogram` settings.
fn mel_config(sr: u32, n_fft: usize, hop_length: usize, n_mels: usize, fmin: f64, fmax: Option<f64>, top_db: Option<f32>) -> PyResult<FrontendConfig> {
    let cfg = FrontendConfig { sample_rate: sr, n_fft, hop_length, n_mels, fmin, fmax, top_db, tile_frames: 1, tile_hop: 1, ..FrontendConfig::default() };
    cfg.validate().map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(cfg)
}

/// `[rows, cols]` row-major values as a NumPy array (no copy: the vector becomes the array's buffer).
fn matrix(py: Python<'_>, rows: usize, cols: usize, data: Vec<f32>) -> PyResult<Bound<'_, PyArray2<f32>>> {
    data.into_pyarray(py).reshape([rows, cols])
}

/// `load(path, sr, duration)`: the file decoded to mono float32 at `sr` (the file's own rate when
/// `None`), at most `duration` seconds.
#[pyfunction]
#[pyo3(signature = (path, sr=Some(22_050), duration=None))]
fn load(py: Python<'_>, path: PathBuf, sr: Option<u32>, duration: Option<f64>) -> PyResult<Bound<'_, PyArray1<f32>>> {
    audio_path(&path)?;
    if duration.is_some_and(|d| d.is_nan() || d <= 0.0) {
        return Err(PyValueError::new_err("duration must be a positive number of seconds"));
    }
    let samples = py.detach(|| -> PyResult<Vec<f32>> {
        let rate = match sr {
            Some(r) => r,
            None => soundalike_audio::decode::MonoDecoder::open(&path).map_err(audio_err)?.info().sample_rate,
        };
        Ok(soundalike_audio::decode_mono(&path, rate, duration).map_err(audio_err)?.0)
    })?;
    Ok(samples.into_pyarray(py))
}

/// `get_samplerate(path)`: the file's own sample rate, without decoding it.
#[pyfunction]
fn get_samplerate(path: PathBuf) -> PyResult<u32> {
    audio_path(&path)?;
    Ok(soundalike_audio::decode::MonoDecoder::open(&path).map_err(audio_err)?.info().sample_rate)
}

/// Mel power spectrogram `[n_mels, frames]` of mono samples, as librosa's `melspectrogram` with
/// `center=True`, zero padding, a periodic Hann window and Slaney mels.
#[pyfunction]
#[pyo3(signature = (y, sr, n_fft, hop_length, n_mels, fmin, fmax))]
#[allow(clippy::too_many_arguments, reason = "librosa's keyword options, one for one")]
fn melspectrogram<'py>(py: Python<'py>, y: PyReadonlyArray1<'py, f32>, sr: u32, n_fft: usize, hop_length: usize, n_mels: usize, fmin: f64, fmax: Option<f64>) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let cfg = mel_config(sr, n_fft, hop_length, n_mels, fmin, fmax, None)?;
    let s = finite_samples(&y)?;
    let (frames, tm) = py.detach(|| {
        let mut m = MelStream::new(&cfg);
        m.push(s);
        m.finish_power()
    });
    // Time-major as computed; the array is band-major, as librosa's.
    let mut data = vec![0f32; tm.len()];
    for (t, row) in tm.chunks_exact(n_mels).enumerate() {
        for (m, v) in row.iter().enumerate() {
            data[m * frames + t] = *v;
        }
    }
    matrix(py, n_mels, frames, data)
}

/// Log-mel spectrogram in dB `[n_mels, frames]`: `power_to_db(melspectrogram(...), ref=1.0, amin=1e-10,
/// top_db=top_db)`, what the model reads.
#[pyfunction]
#[pyo3(signature = (y, sr, n_fft, hop_length, n_mels, fmin, fmax, top_db))]
#[allow(clippy::too_many_arguments, reason = "librosa's keyword options, one for one")]
fn log_melspectrogram<'py>(py: Python<'py>, y: PyReadonlyArray1<'py, f32>, sr: u32, n_fft: usize, hop_length: usize, n_mels: usize, fmin: f64, fmax: Option<f64>, top_db: Option<f32>) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let cfg = mel_config(sr, n_fft, hop_length, n_mels, fmin, fmax, top_db)?;
    let s = finite_samples(&y)?;
    let mel: LogMel = py.detach(|| soundalike_audio::log_mel(s, &cfg));
    matrix(py, mel.n_mels, mel.n_frames, mel.data)
}

/// The facts of an analysis as `soundalike analyze --json` prints them (`name`: the file, or "array").
fn facts_answer(a: soundalike_audio::Analysis, name: &Path) -> PyResult<String> {
    let f = a.facts.ok_or_else(|| PyValueError::new_err(format!("{}: no analysis", name.display())))?;
    Ok(soundalike::commands::analyze::file_facts_json(name, &f, a.info.duration_s).to_string())
}

/// The tags of an analysis made with the tagger's spectrogram, as `soundalike tags --json` prints them.
fn tags_answer(mut a: soundalike_audio::Analysis, name: &Path, top: usize, patches: Option<usize>) -> PyResult<String> {
    use soundalike::commands::tags::{tags_json, tags_of};
    let plan = match patches {
        None => soundalike_model::musicnn::EMBED_PLAN,
        Some(0) => soundalike_model::musicnn::PatchPlan::All,
        Some(k) => soundalike_model::musicnn::PatchPlan::Spread(k),
    };
    let t = tags_of(&mut a, plan, name).map_err(PyValueError::new_err)?;
    Ok(tags_json(name, &t, a.info.duration_s, top).to_string())
}

/// What the decode pass computes for `analyze`.
fn facts_extras() -> soundalike_audio::Extras {
    soundalike_audio::Extras { facts: true, ..Default::default() }
}

/// `top` as `tags` takes it.
fn top_tags(top: usize) -> PyResult<usize> {
    if top == 0 {
        return Err(PyValueError::new_err("top must be at least 1"));
    }
    Ok(top)
}

/// `analyze(path)`: the file's tempo, key and loudness, as `soundalike analyze --json` prints them.
#[pyfunction]
fn analyze(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    audio_path(&path)?;
    py.detach(|| facts_answer(soundalike_audio::analyze_file_with(&path, &FrontendConfig::default(), &facts_extras()).map_err(audio_err)?, &path))
}

/// What `analyze`/`tags` read when given an array: its name in messages.
const ARRAY: &str = "array";

/// `analyze_samples(y, sr)`: [`analyze`] of a mono signal at `sr` Hz.
#[pyfunction]
fn analyze_samples(py: Python<'_>, y: PyReadonlyArray1<'_, f32>, sr: u32) -> PyResult<String> {
    let s = finite_samples(&y)?;
    let name = Path::new(ARRAY);
    py.detach(|| facts_answer(soundalike_audio::analyze_samples_with(s, sr, name, &FrontendConfig::default(), &facts_extras()).map_err(audio_err)?, name))
}

/// `tags(path, top, patches)`: the musicnn taggers' guesses, as `soundalike tags --json` prints them.
#[pyfunction]
#[pyo3(signature = (path, top=10, patches=None))]
fn tags(py: Python<'_>, path: PathBuf, top: usize, patches: Option<usize>) -> PyResult<String> {
    audio_path(&path)?;
    let top = top_tags(top)?;
    let extras = soundalike::commands::tags::tag_extras();
    py.detach(|| tags_answer(soundalike_audio::analyze_file_with(&path, &FrontendConfig::default(), &extras).map_err(audio_err)?, &path, top, patches))
}

/// `tags_samples(y, sr, top, patches)`: [`tags`] of a mono signal at `sr` Hz.
#[pyfunction]
#[pyo3(signature = (y, sr, top=10, patches=None))]
fn tags_samples(py: Python<'_>, y: PyReadonlyArray1<'_, f32>, sr: u32, top: usize, patches: Option<usize>) -> PyResult<String> {
    let s = finite_samples(&y)?;
    let top = top_tags(top)?;
    let (name, extras) = (Path::new(ARRAY), soundalike::commands::tags::tag_extras());
    py.detach(|| tags_answer(soundalike_audio::analyze_samples_with(s, sr, name, &FrontendConfig::default(), &extras).map_err(audio_err)?, name, top, patches))
}

/// The 100 tags the taggers know.
#[pyfunction]
fn tag_names() -> Vec<&'static str> {
    soundalike_tags::all_tags()
}

/// A song's vector and its genre probabilities, as NumPy arrays.
type VectorAndProbs<'py> = (Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<f32>>);

/// A model loaded for embedding (`Model(path=None)`: the built-in default when no path).
#[pyclass(frozen, module = "soundalike._soundalike")]
struct Model {
    inner: LoadedModel,
    device: Device,
    builtin: bool,
}

impl Model {
    fn vector_and_probs<'py>(&self, py: Python<'py>, v: soundalike_model::SongEmbedding) -> VectorAndProbs<'py> {
        (v.vector.into_pyarray(py), v.probs.into_pyarray(py))
    }
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path=None))]
    fn new(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Model> {
        py.detach(|| {
            let device = soundalike_model::device_from_name("cpu").map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            let (inner, builtin) = match &path {
                Some(p) if p.is_file() => return Err(PyValueError::new_err(format!("{}: a model is a folder (config.json and model.bpk), not a file", p.display()))),
                Some(p) => (soundalike_model::load_model(p, &device).map_err(|e| any_err(e.into()))?, false),
                None => (
                    soundalike_model::load_model_bytes(DEFAULT_CONFIG, DEFAULT_WEIGHTS.to_vec(), Path::new("<built-in models/default>"), &device).map_err(|e| any_err(e.into()))?,
                    true,
                ),
            };
            Ok(Model { inner, device, builtin })
        })
    }

    /// The model's name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The fingerprint of its weights (stamped into every store it makes).
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.inner.config.fingerprint
    }

    /// Its genre labels, in the order of `predict_proba`.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.config.labels.clone()
    }

    /// The sample rate it listens at.
    #[getter]
    fn sr(&self) -> u32 {
        self.inner.config.frontend.sample_rate
    }

    /// The length of a song vector.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.config.arch.embedding_dim
    }

    /// The folder it was loaded from (`None` for the built-in default).
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        (!self.builtin).then(|| self.inner.dir.clone())
    }

    /// What the model reads, as JSON (front end, architecture, labels).
    #[getter]
    fn config_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner.config).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// `(vector, probabilities)` of a file: the same decode and network as `soundalike embed`.
    fn embed_file<'py>(&self, py: Python<'py>, path: PathBuf) -> PyResult<VectorAndProbs<'py>> {
        audio_path(&path)?;
        let e = py.detach(|| {
            let mut a = soundalike_audio::analyze_file_with(&path, &self.inner.config.frontend, &self.inner.analysis_extras(Default::default())).map_err(audio_err)?;
            Ok::<_, PyErr>(self.inner.embed_analysis(&mut a, &self.device).0)
        })?;
        Ok(self.vector_and_probs(py, e))
    }

    /// `(vector, probabilities)` of mono samples at `sr` Hz (resampled to the model's rate when it differs).
    fn embed_samples<'py>(&self, py: Python<'py>, y: PyReadonlyArray1<'py, f32>, sr: u32) -> PyResult<VectorAndProbs<'py>> {
        let s = finite_samples(&y)?;
        let e = py.detach(|| {
            let mut a = soundalike_audio::analyze_samples_with(s, sr, Path::new(ARRAY), &self.inner.config.frontend, &self.inner.analysis_extras(Default::default())).map_err(audio_err)?;
            Ok::<_, PyErr>(self.inner.embed_analysis(&mut a, &self.device).0)
        })?;
        Ok(self.vector_and_probs(py, e))
    }

    /// `(vectors [n, dim], failures)`: every file embedded in parallel on `threads` threads (all cores
    /// when `None`); a file that fails leaves a row of NaN and `(index, path, reason)` in `failures`.
    #[pyo3(signature = (paths, threads=None))]
    #[allow(clippy::type_complexity, reason = "a Python tuple")]
    fn embed_many<'py>(&self, py: Python<'py>, paths: Vec<PathBuf>, threads: Option<usize>) -> PyResult<(Bound<'py, PyArray2<f32>>, Vec<(usize, PathBuf, String)>)> {
        use rayon::prelude::*;
        if threads == Some(0) {
            return Err(PyValueError::new_err("threads must be at least 1 (or None for every core)"));
        }
        let dim = self.inner.config.arch.embedding_dim;
        let n = paths.len();
        let (data, failures) = py.detach(|| -> PyResult<_> {
            let run = || {
                paths
                    .par_iter()
                    .map(|p| {
                        if p.is_dir() {
                            return Err(folder(p));
                        }
                        soundalike_audio::analyze_file_with(p, &self.inner.config.frontend, &self.inner.analysis_extras(Default::default()))
                            .map(|mut a| self.inner.embed_analysis(&mut a, &self.device).0.vector)
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Vec<_>>()
            };
            let results = match threads {
                Some(t) => rayon::ThreadPoolBuilder::new().num_threads(t).build().map_err(|e| PyRuntimeError::new_err(e.to_string()))?.install(run),
                None => run(),
            };
            let mut data = Vec::with_capacity(n * dim);
            let mut failures = Vec::new();
            for (i, r) in results.into_iter().enumerate() {
                match r {
                    Ok(v) => data.extend(v),
                    Err(why) => {
                        data.extend(std::iter::repeat_n(f32::NAN, dim));
                        failures.push((i, paths[i].clone(), why));
                    }
                }
            }
            Ok((data, failures))
        })?;
        Ok((matrix(py, n, dim, data)?, failures))
    }

    /// Embeds a library into a store, as `soundalike embed LIBRARY --out STORE` does (incremental and
    /// resumable); `progress(stage, done, total)` is called after each batch. Returns the report (JSON).
    #[pyo3(signature = (library, store, tags=true, index=true, batch=16, prune=false, labels=None, progress=None))]
    #[allow(clippy::too_many_arguments, reason = "the command's options, one for one")]
    fn embed_library(&self, py: Python<'_>, library: PathBuf, store: PathBuf, tags: bool, index: bool, batch: usize, prune: bool, labels: Option<PathBuf>, progress: Option<Py<PyAny>>) -> PyResult<String> {
        if !library.is_dir() {
            let what = if library.exists() { "is not a folder" } else { "no such folder" };
            return Err(PyFileNotFoundError::new_err(format!("{}: {what}: embed reads a library folder", library.display())));
        }
        let args = EmbedArgs {
            library,
            model: self.inner.dir.clone(),
            out: store,
            labels: LabelArgs { labels, label_column: "label".into(), group_column: None },
            shard: None,
            json: true,
            device: "cpu".into(),
            index,
            batch: batch.max(1),
            wait: false,
            tags,
            prune,
        };
        let progress = PyProgress { callback: progress, stage: Mutex::new((String::new(), 0)), done: AtomicU64::new(0), raised: Mutex::new(None) };
        let r = py.detach(|| embed_library(&args, &self.inner, &self.device, &progress));
        if let Some(e) = progress.raised.lock().ok().and_then(|mut r| r.take()) {
            return Err(e);
        }
        serde_json::to_string(&r.map_err(any_err)?).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }
}

/// Progress of an embedding run reported to a Python callable, which may stop it by raising (Ctrl-C
/// included: signals are checked at each batch).
struct PyProgress {
    callback: Option<Py<PyAny>>,
    stage: Mutex<(String, u64)>,
    done: AtomicU64,
    raised: Mutex<Option<PyErr>>,
}

impl PyProgress {
    fn report(&self) -> anyhow::Result<()> {
        let (stage, total) = self.stage.lock().map(|s| s.clone()).unwrap_or_default();
        let done = self.done.load(Ordering::Relaxed);
        let r = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            if let Some(cb) = &self.callback {
                cb.call1(py, (stage, done, total))?;
            }
            Ok(())
        });
        r.map_err(|e| {
            let msg = e.to_string();
            if let Ok(mut slot) = self.raised.lock() {
                slot.get_or_insert(e);
            }
            anyhow::anyhow!("stopped by Python: {msg}; the songs embedded so far are kept")
        })
    }
}

impl Progress for PyProgress {
    fn start(&self, stage: &str, total: u64) {
        if let Ok(mut s) = self.stage.lock() {
            *s = (stage.to_string(), total);
        }
        self.done.store(0, Ordering::Relaxed);
    }
    fn inc(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
    fn checkpoint(&self) -> anyhow::Result<()> {
        self.report()
    }
    fn finish(&self) {}
}

/// A store opened for reading and searching (`Store(path)`): its songs, vectors and recommendations.
#[pyclass(frozen, module = "soundalike._soundalike")]
struct Store {
    cat: Catalog,
    /// The store's clusters (`soundalike clusters`), when it has them: `k` and what is stale about them.
    clusters: Option<(usize, Option<String>)>,
    /// The vectors as one `[n, dim]` matrix when the catalog does not hold them so (it keeps them in its
    /// HNSW index): copied once, on the first `vectors()`.
    copied: OnceLock<Array2<f32>>,
}

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (path, exact=false, genre_source="either"))]
    fn new(py: Python<'_>, path: PathBuf, exact: bool, genre_source: &str) -> PyResult<Store> {
        let source: GenreSource = genre_source.parse().map_err(|e: String| PyValueError::new_err(format!("genre_source: {e}")))?;
        if !path.exists() {
            return Err(PyFileNotFoundError::new_err(format!("{}: no such store (make one with Store.embed or `soundalike embed`)", path.display())));
        }
        let method = if exact { Method::Exact } else { Method::Auto };
        let (cat, clusters) = py.detach(|| -> PyResult<_> {
            let mut cat = Catalog::open_without_saving(&path, method, &soundalike_recommend::AnnParams::default()).map_err(|e| any_err(e.into()))?;
            cat.use_genres(source);
            // Clusters of another model, or damaged, are left out here and named when a query asks for them.
            let clusters = cat.use_clusters().ok().flatten().map(|c| (c.k, c.stale_note()));
            Ok((cat, clusters))
        })?;
        Ok(Store { cat, clusters, copied: OnceLock::new() })
    }

    fn __len__(&self) -> usize {
        self.cat.len()
    }

    /// The songs' ids (paths relative to the library), in row order.
    #[getter]
    fn ids(&self) -> Vec<String> {
        self.cat.songs().iter().map(|s| s.id.clone()).collect()
    }

    /// The store's folder.
    #[getter]
    fn path(&self) -> PathBuf {
        self.cat.dir().to_path_buf()
    }

    /// The fingerprint of the model that made the store.
    #[getter]
    fn model_fingerprint(&self) -> &str {
        &self.cat.header.model_fingerprint
    }

    /// The name of the model that made the store.
    #[getter]
    fn model_name(&self) -> &str {
        &self.cat.header.model_name
    }

    /// The library folder the store was made from.
    #[getter]
    fn library(&self) -> PathBuf {
        self.cat.header.library_root.clone()
    }

    /// Every song vector, `[n, dim]` float32, read-only: a view of the store's own matrix (no copy),
    /// or one copy kept when the store holds its vectors in the HNSW index.
    fn vectors(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyArray2<f32>>> {
        let this = slf.get();
        let (n, dim) = (this.cat.len(), this.cat.header.dim);
        let arr = match this.cat.matrix().filter(|m| m.len() == n * dim) {
            Some(m) => {
                let view = ArrayView2::from_shape((n, dim), m).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
                // SAFETY: the catalog is never changed after it is opened (the class is frozen), so the
                // matrix is neither freed nor moved while `slf`, the array's base, lives.
                unsafe { PyArray2::borrow_from_array(&view, slf.clone().into_any()) }
            }
            None => {
                let copy = this.copied.get_or_init(|| {
                    let mut a = Array2::zeros((n, dim));
                    for (r, mut row) in a.rows_mut().into_iter().enumerate() {
                        row.iter_mut().zip(this.cat.vector(r).iter()).for_each(|(d, s)| *d = *s);
                    }
                    a
                });
                // SAFETY: as above: the copy is set once and never changed while `slf` lives.
                unsafe { PyArray2::borrow_from_array(copy, slf.clone().into_any()) }
            }
        };
        arr.readwrite().make_nonwriteable();
        Ok(arr)
    }

    /// How many clusters the store has (`None` before `soundalike clusters`).
    #[getter]
    fn n_clusters(&self) -> Option<usize> {
        self.clusters.as_ref().map(|c| c.0)
    }

    /// Every song as the recommendations show it (JSON list, in row order).
    fn songs(&self) -> PyResult<String> {
        let all: Vec<_> = (0..self.cat.len()).map(|r| self.cat.view(r)).collect();
        serde_json::to_string(&all).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// One song as the recommendations show it (JSON), by id, path or text.
    fn song(&self, query: &str) -> PyResult<String> {
        let row = self.cat.resolve(query).map_err(|e| PyValueError::new_err(e.to_string()))?;
        serde_json::to_string(&self.cat.view(row)).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// The answer (JSON: `results`, `notes`) to songs like `songs` (ids, paths or text) and `vectors`
    /// (songs from outside the store), with the command line's filters.
    #[pyo3(signature = (songs, vectors, k=10, *, genre=None, same_genre=false, exclude_same_artist=false, exclude_same_group=false,
        max_per_album=None, bpm=None, bpm_near=None, bpm_fold=false, key=None, key_compatible=false, key_rule="strict",
        tags=Vec::new(), tag_min=None, same_cluster=false, cluster=None))]
    #[allow(clippy::too_many_arguments, reason = "the command line's filters, one for one")]
    fn query(
        &self,
        py: Python<'_>,
        songs: Vec<String>,
        vectors: Vec<Vec<f32>>,
        k: usize,
        genre: Option<String>,
        same_genre: bool,
        exclude_same_artist: bool,
        exclude_same_group: bool,
        max_per_album: Option<usize>,
        bpm: Option<String>,
        bpm_near: Option<f32>,
        bpm_fold: bool,
        key: Option<String>,
        key_compatible: bool,
        key_rule: &str,
        tags: Vec<String>,
        tag_min: Option<f32>,
        same_cluster: bool,
        cluster: Option<usize>,
    ) -> PyResult<String> {
        let bad = |what: &str, e: String| PyValueError::new_err(format!("{what}: {e}"));
        if songs.is_empty() && vectors.is_empty() && cluster.is_none() {
            return Err(PyValueError::new_err("say what to match: song=ID|PATH|TEXT (or a list of them), file=NEW.mp3, or cluster=N"));
        }
        let clusters = match (same_cluster || cluster.is_some(), &self.clusters) {
            (false, _) => ClusterScope::Any,
            (true, None) => {
                let dir = self.cat.dir().display();
                return Err(PyValueError::new_err(format!("{dir}: the store has no clusters yet; run `soundalike clusters {dir}` first")));
            }
            (true, Some((k, _))) => match cluster {
                Some(n) if n >= *k => return Err(PyValueError::new_err(format!("cluster={n}: the store has clusters 0 to {}", k - 1))),
                Some(n) => ClusterScope::Only(n),
                None => ClusterScope::Same,
            },
        };
        if k == 0 {
            return Err(PyValueError::new_err("k must be at least 1"));
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != self.cat.header.dim || v.iter().any(|x| !x.is_finite())) {
            return Err(PyValueError::new_err(format!("a query vector must be {} finite values (got {})", self.cat.header.dim, v.len())));
        }
        let around = Around {
            genre,
            same_genre,
            exclude_same_artist,
            exclude_same_group,
            max_per_album,
            bpm: bpm.as_deref().map(str::parse::<BpmRange>).transpose().map_err(|e| bad("bpm", e))?,
            bpm_near,
            bpm_fold,
            key: key.as_deref().map(str::parse::<CamelotKey>).transpose().map_err(|e| bad("key", e.to_string()))?,
            key_compatible,
            key_rule: key_rule.parse::<KeyRule>().map_err(|e| bad("key_rule", e))?,
            tags: tags.iter().map(|t| soundalike_tags::resolve(t)).collect::<Result<_, _>>().map_err(|e| bad("tags", e))?,
            tag_min,
        };
        let mut seeds = Vec::new();
        for q in &songs {
            let row = self.cat.resolve(q).map_err(|e| PyValueError::new_err(e.to_string()))?;
            seeds.push(self.cat.songs()[row].id.clone());
        }
        let scoped = clusters != ClusterScope::Any;
        let req = Request { seeds, extra: vectors, k, around, clusters };
        let req = req.validate(usize::MAX).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let answer = py.detach(|| self.cat.answer(&req)).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let mut notes = answer.notes;
        if let Some(stale) = self.clusters.as_ref().and_then(|c| c.1.clone()).filter(|_| scoped) {
            notes.push(stale);
        }
        let j = serde_json::json!({"results": answer.results, "notes": notes, "clusters": answer.clusters});
        Ok(j.to_string())
    }
}

/// The extension module.
#[pymodule]
fn _soundalike(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(get_samplerate, m)?)?;
    m.add_function(wrap_pyfunction!(melspectrogram, m)?)?;
    m.add_function(wrap_pyfunction!(log_melspectrogram, m)?)?;
    m.add_function(wrap_pyfunction!(analyze, m)?)?;
    m.add_function(wrap_pyfunction!(tags, m)?)?;
    m.add_function(wrap_pyfunction!(analyze_samples, m)?)?;
    m.add_function(wrap_pyfunction!(tags_samples, m)?)?;
    m.add_function(wrap_pyfunction!(tag_names, m)?)?;
    m.add_class::<Model>()?;
    m.add_class::<Store>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
