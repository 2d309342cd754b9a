//! Streaming decode with Symphonia: any supported container/codec -> mono f32 at the source rate ->
//! resampled to the target rate, one packet at a time, so memory does not grow with the file's length.

use std::fs::File;
use std::path::{Path, PathBuf};

use rubato::{FftFixedIn, Resampler};
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::{MetadataOptions, StandardTag};

use crate::{AudioError, Result};

/// Tags read from the file (ID3, Vorbis comments, MP4 atoms...), where present.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tags {
    /// Track title.
    pub title: Option<String>,
    /// Artist (falls back to album artist).
    pub artist: Option<String>,
    /// Album.
    pub album: Option<String>,
    /// Genre (ID3 TCON, Vorbis GENRE).
    pub genre: Option<String>,
}

/// What the decoder learnt about the file besides its samples.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    /// Sample rate of the stream in Hz.
    pub sample_rate: u32,
    /// Channel count of the stream (downmixed to mono).
    pub channels: usize,
    /// Seconds of audio decoded (after `max_duration_s`, if it cut).
    pub duration_s: f64,
    /// Packets that failed to decode and were skipped.
    pub skipped_packets: usize,
    /// Packets decoded.
    pub decoded_packets: usize,
    /// Tags.
    pub tags: Tags,
}

/// A file opened for streaming decode to mono.
pub struct MonoDecoder {
    path: PathBuf,
    format: Box<dyn FormatReader + 'static>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    info: SourceInfo,
    interleaved: Vec<f32>,
    done: bool,
}

fn unsupported(path: &Path, e: impl std::fmt::Display) -> AudioError {
    AudioError::Unsupported { path: path.to_path_buf(), reason: e.to_string() }
}

impl MonoDecoder {
    /// Opens `path`, probes its container by content (the extension is only a hint, so an Ogg file named
    /// `.mp3` still decodes) and picks the default audio track.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |cause| AudioError::Io { path: path.to_path_buf(), cause };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            return Err(AudioError::Empty { path: path.to_path_buf() });
        }
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let mut format = symphonia::default::get_probe()
            .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
            .map_err(|e| match e {
                SymError::IoError(ref ioe) if ioe.kind() == std::io::ErrorKind::UnexpectedEof => {
                    AudioError::Unsupported { path: path.to_path_buf(), reason: "no audio stream found".into() }
                }
                SymError::IoError(ioe) => io(ioe),
                other => unsupported(path, other),
            })?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| AudioError::NoAudioTrack { path: path.to_path_buf() })?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| AudioError::NoAudioTrack { path: path.to_path_buf() })?
            .clone();
        let track_id = track.id;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(|e| unsupported(path, e))?;
        let mut tags = Tags::default();
        read_tags(&mut *format, &mut tags);
        let info = SourceInfo {
            sample_rate: params.sample_rate.unwrap_or(0),
            channels: params.channels.as_ref().map(|c| c.count()).unwrap_or(0),
            tags,
            ..Default::default()
        };
        Ok(MonoDecoder { path: path.to_path_buf(), format, decoder, track_id, info, interleaved: Vec::new(), done: false })
    }

    /// What is known so far (rate, channels, tags; counts grow while decoding).
    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// The last packet [`MonoDecoder::next_into`] decoded, as the source has it: interleaved samples, the
    /// channel count and the sample rate (loudness is measured on these, not on the mono mix).
    pub fn last_packet(&self) -> (&[f32], usize, u32) {
        (&self.interleaved, self.info.channels.max(1), self.info.sample_rate)
    }

    /// Appends the next packet's samples, downmixed to mono, to `out`. Returns `false` at end of stream.
    ///
    /// A packet that fails to decode is skipped and counted; a file that ends early (truncated) ends the
    /// stream; other I/O errors are fatal.
    pub fn next_into(&mut self, out: &mut Vec<f32>) -> Result<bool> {
        loop {
            if self.done {
                return Ok(false);
            }
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.done = true;
                    return Ok(false);
                }
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.done = true;
                    return Ok(false);
                }
                Err(SymError::ResetRequired) => {
                    // Chained Ogg streams: keep what we have rather than guessing at the next stream.
                    self.done = true;
                    return Ok(false);
                }
                Err(SymError::DecodeError(_)) => {
                    self.info.skipped_packets += 1;
                    continue;
                }
                Err(SymError::IoError(cause)) => {
                    return Err(AudioError::Io { path: self.path.clone(), cause });
                }
                Err(e) => return Err(AudioError::Corrupt { path: self.path.clone(), reason: e.to_string() }),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            match self.decoder.decode(&packet) {
                Ok(buf) => {
                    let spec = buf.spec();
                    let ch = spec.channels().count().max(1);
                    if self.info.sample_rate == 0 {
                        self.info.sample_rate = spec.rate();
                    }
                    self.info.channels = ch;
                    let frames = buf.frames();
                    self.info.decoded_packets += 1;
                    if frames == 0 {
                        continue;
                    }
                    self.interleaved.resize(frames * ch, 0.0);
                    buf.copy_to_slice_interleaved(&mut self.interleaved[..]);
                    downmix_into(&self.interleaved, ch, out);
                    self.info.duration_s += frames as f64 / self.info.sample_rate.max(1) as f64;
                    return Ok(true);
                }
                Err(SymError::DecodeError(_)) | Err(SymError::IoError(_)) => {
                    self.info.skipped_packets += 1;
                    continue;
                }
                Err(e) => return Err(AudioError::Corrupt { path: self.path.clone(), reason: e.to_string() }),
            }
        }
    }
}

fn read_tags(format: &mut dyn FormatReader, tags: &mut Tags) {
    let mut meta = format.metadata();
    let Some(rev) = meta.skip_to_latest() else { return };
    let mut album_artist = None;
    for tag in rev.media.tags.iter().chain(rev.per_track.iter().flat_map(|t| t.metadata.tags.iter())) {
        let set = |slot: &mut Option<String>, v: &str| {
            let v = v.trim().trim_matches('\0');
            if slot.is_none() && !v.is_empty() {
                *slot = Some(v.to_string());
            }
        };
        match &tag.std {
            Some(StandardTag::TrackTitle(v)) => set(&mut tags.title, v),
            Some(StandardTag::Artist(v)) => set(&mut tags.artist, v),
            Some(StandardTag::AlbumArtist(v)) => set(&mut album_artist, v),
            Some(StandardTag::Album(v)) => set(&mut tags.album, v),
            Some(StandardTag::Genre(v)) => set(&mut tags.genre, v),
            _ => {}
        }
    }
    if tags.artist.is_none() {
        tags.artist = album_artist;
    }
}

/// Appends interleaved `channels`-channel samples to `out` as mono: the mean of the channels (librosa's
/// `to_mono`).
pub(crate) fn downmix_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend_from_slice(interleaved);
    } else {
        let scale = 1.0 / channels as f32;
        out.extend(interleaved.chunks_exact(channels).map(|f| f.iter().sum::<f32>() * scale));
    }
}

/// Streaming resampler (rubato's FFT resampler) that hides rubato's chunking and delay: feed any number
/// of samples, get the resampled signal aligned with the input and exactly `ceil(n * out / in)` long.
pub struct StreamResampler {
    inner: Option<FftFixedIn<f32>>,
    pending: Vec<f32>,
    to_skip: usize,
    consumed: u64,
    produced: u64,
    ratio: (u64, u64),
}

impl StreamResampler {
    /// `from` and `to` in Hz. Equal rates pass samples through untouched.
    pub fn new(from: u32, to: u32) -> Result<Self> {
        if from == 0 || to == 0 {
            return Err(AudioError::Config(format!("cannot resample {from} Hz -> {to} Hz")));
        }
        let inner = if from == to {
            None
        } else {
            Some(
                FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1)
                    .map_err(|e| AudioError::Config(format!("resampler {from}->{to}: {e}")))?,
            )
        };
        let to_skip = inner.as_ref().map(|r| r.output_delay()).unwrap_or(0);
        Ok(StreamResampler { inner, pending: Vec::new(), to_skip, consumed: 0, produced: 0, ratio: (from as u64, to as u64) })
    }

    fn emit(&mut self, chunk: &[f32], out: &mut Vec<f32>) {
        let skip = self.to_skip.min(chunk.len());
        self.to_skip -= skip;
        out.extend_from_slice(&chunk[skip..]);
        self.produced += (chunk.len() - skip) as u64;
    }

    /// Resamples `input`, appending whatever is ready to `out`.
    #[allow(clippy::expect_used, reason = "rubato fails only on wrong buffer sizes, and the sizes are checked just above")]
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.consumed += input.len() as u64;
        let Some(mut r) = self.inner.take() else {
            out.extend_from_slice(input);
            self.produced += input.len() as u64;
            return;
        };
        self.pending.extend_from_slice(input);
        let mut start = 0;
        loop {
            let need = r.input_frames_next();
            if self.pending.len() - start < need {
                break;
            }
            let res = r.process(&[&self.pending[start..start + need]], None).expect("sizes checked above");
            start += need;
            let chunk = res.into_iter().next().unwrap_or_default();
            self.emit(&chunk, out);
        }
        self.pending.drain(..start);
        self.inner = Some(r);
    }

    /// Flushes the tail; afterwards `out` holds exactly `ceil(consumed * to / from)` samples in total.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let expected = (self.consumed * self.ratio.1).div_ceil(self.ratio.0);
        let Some(mut r) = self.inner.take() else { return };
        let pending = std::mem::take(&mut self.pending);
        let mut first = Some(pending);
        let mut guard = 0;
        while self.produced < expected && guard < 64 {
            guard += 1;
            let res = match first.take() {
                Some(p) => r.process_partial(Some(&[&p[..]]), None),
                None => r.process_partial::<&[f32]>(None, None),
            };
            let chunk = res.map(|v| v.into_iter().next().unwrap_or_default()).unwrap_or_default();
            let before = out.len();
            self.emit(&chunk, out);
            let over = self.produced.saturating_sub(expected) as usize;
            if over > 0 {
                out.truncate(out.len() - over.min(out.len() - before));
                self.produced = expected;
            }
        }
        self.inner = Some(r);
    }
}

/// The file's tags (title, artist, album, genre) without decoding any audio: a probe and the metadata.
pub fn read_file_tags(path: &Path) -> Result<Tags> {
    Ok(MonoDecoder::open(path)?.info().tags.clone())
}

/// Decodes a whole file to mono f32 at `target_rate` (testing and small files; the log-mel path streams).
pub fn decode_mono(path: &Path, target_rate: u32, max_duration_s: Option<f64>) -> Result<(Vec<f32>, SourceInfo)> {
    let mut out = Vec::new();
    let info = stream_mono(path, target_rate, max_duration_s, |chunk| out.extend_from_slice(chunk))?;
    Ok((out, info))
}

/// Decodes `path` packet by packet, resampled to `target_rate`, handing each mono chunk to `sink`.
/// Memory stays bounded by a packet plus the resampler's buffer.
pub fn stream_mono(path: &Path, target_rate: u32, max_duration_s: Option<f64>, sink: impl FnMut(&[f32])) -> Result<SourceInfo> {
    stream_mono_and_source(path, target_rate, max_duration_s, sink, |_, _, _| {})
}

/// [`stream_mono`], also handing each packet as the source has it (interleaved samples, channels, rate)
/// to `source`, cut at `max_duration_s` like the mono stream.
#[allow(clippy::expect_used, reason = "the resampler is created just above when the rates differ")]
pub fn stream_mono_and_source(
    path: &Path,
    target_rate: u32,
    max_duration_s: Option<f64>,
    mut sink: impl FnMut(&[f32]),
    mut source: impl FnMut(&[f32], usize, u32),
) -> Result<SourceInfo> {
    let mut dec = MonoDecoder::open(path)?;
    let mut raw = Vec::with_capacity(8192);
    let mut res_out = Vec::with_capacity(8192);
    let mut resampler: Option<StreamResampler> = None;
    let mut taken: u64 = 0;
    let mut limit: Option<u64> = None;
    while dec.next_into(&mut raw)? {
        if resampler.is_none() {
            let sr = dec.info().sample_rate;
            if sr == 0 {
                return Err(AudioError::Corrupt { path: path.to_path_buf(), reason: "unknown sample rate".into() });
            }
            resampler = Some(StreamResampler::new(sr, target_rate)?);
            limit = max_duration_s.map(|s| (s * sr as f64).round() as u64);
        }
        if let Some(l) = limit {
            let room = l.saturating_sub(taken) as usize;
            raw.truncate(room);
        }
        let (packet, channels, rate) = dec.last_packet();
        source(&packet[..(raw.len() * channels).min(packet.len())], channels, rate);
        taken += raw.len() as u64;
        let r = resampler.as_mut().expect("set above");
        r.push(&raw, &mut res_out);
        raw.clear();
        if !res_out.is_empty() {
            sink(&res_out);
            res_out.clear();
        }
        if matches!(limit, Some(l) if taken >= l) {
            break;
        }
    }
    let mut info = dec.info().clone();
    if info.decoded_packets == 0 {
        return Err(if info.skipped_packets > 0 {
            AudioError::Corrupt { path: path.to_path_buf(), reason: format!("all {} packets failed to decode", info.skipped_packets) }
        } else {
            AudioError::Corrupt { path: path.to_path_buf(), reason: "stream holds no audio packets".into() }
        });
    }
    if let Some(r) = resampler.as_mut() {
        r.finish(&mut res_out);
        if !res_out.is_empty() {
            sink(&res_out);
        }
    }
    if info.sample_rate > 0 {
        info.duration_s = taken as f64 / info.sample_rate as f64;
    }
    Ok(info)
}
