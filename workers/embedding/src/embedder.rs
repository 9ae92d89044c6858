//! Sentence embeddings: all-MiniLM-L6-v2 through ONNX Runtime (loaded dynamically).
//!
//! Tokenize with dynamic padding (the shipped tokenizer.json pads every input to 128 tokens,
//! ~7× slower), run the model, mean-pool the last hidden state over real tokens, L2-normalise.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use avm_core::{Error, ErrorKind, Result};

use crate::model::{DIM, MODEL_ID, ModelFiles};

/// Something that turns text into unit vectors.
pub trait Embedder: Send + Sync {
    /// The model id stored with each vector.
    fn model_id(&self) -> &str;
    /// Dimensions.
    fn dim(&self) -> usize;
    /// Embeds documents (no cache).
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// Embeds a query (cached by its full text).
    fn embed_query(&self, text: &str) -> Result<Vec<f32>>;
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, format!("{what}: {e}"))
}

/// The ONNX Runtime environment: one per process, from the first runtime library loaded.
fn environment(runtime: &std::path::Path) -> Result<&'static ort::environment::Environment> {
    static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> =
        OnceLock::new();
    ENV.get_or_init(|| {
        ort::init_from(runtime)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", runtime.display()))?
            .with_name("avm")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    })
    .as_ref()
    .map_err(|e| Error::new(ErrorKind::Unavailable, e.clone()))
}

/// Most cached query vectors.
const QUERY_CACHE: usize = 4096;

/// The ONNX embedder.
pub struct OrtEmbedder {
    /// `run` needs `&mut`: one session, used by one thread at a time (inference already uses
    /// both cores through intra-op threads).
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    cache: Mutex<HashMap<String, Vec<f32>>>,
}

impl OrtEmbedder {
    /// Loads the runtime, the model and the tokenizer (~250 ms).
    pub fn load(files: &ModelFiles) -> Result<Self> {
        let missing = files.missing();
        if !missing.is_empty() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "semantic search needs the model files; missing: {}. Run `avm model install`",
                    missing
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let env = environment(&files.runtime)?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(4);
        let session = Session::builder(env)
            .map_err(|e| unavailable("session", e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| unavailable("session options", e))?
            .with_intra_threads(threads)
            .map_err(|e| unavailable("session options", e))?
            // Idle intra-op threads sleep rather than spin: spinning took the other core from
            // the full-text half of a hybrid search running beside the embedding (hybrid p50
            // 8.5 -> 7.1 ms, p99 30 -> 11 ms at 100,000 memories; query embedding and bulk embedding
            // unchanged).
            .with_intra_op_spinning(false)
            .map_err(|e| unavailable("session options", e))?
            .commit_from_file(&files.model)
            .map_err(|e| unavailable(&format!("cannot load {}", files.model.display()), e))?;
        let mut tokenizer = Tokenizer::from_file(&files.tokenizer)
            .map_err(|e| unavailable(&format!("cannot load {}", files.tokenizer.display()), e))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: 256,
                ..TruncationParams::default()
            }))
            .map_err(|e| unavailable("tokenizer", e))?;
        Ok(OrtEmbedder {
            session: Mutex::new(session),
            tokenizer,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn run(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| unavailable("tokenizer", e))?;
        let b = enc.len();
        let l = enc.first().map(|e| e.get_ids().len()).unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(b * l);
        let mut mask = Vec::with_capacity(b * l);
        let mut types = Vec::with_capacity(b * l);
        for e in &enc {
            ids.extend(e.get_ids().iter().map(|&x| i64::from(x)));
            mask.extend(e.get_attention_mask().iter().map(|&x| i64::from(x)));
            types.extend(e.get_type_ids().iter().map(|&x| i64::from(x)));
        }
        let shape = [b as i64, l as i64];
        let mut session = self
            .session
            .lock()
            .map_err(|_| Error::internal("the embedding session lock is poisoned"))?;
        let outputs = session
            .run(ort::inputs![
                "input_ids" => TensorRef::from_array_view((shape, &*ids)).map_err(|e| unavailable("input", e))?,
                "attention_mask" => TensorRef::from_array_view((shape, &*mask)).map_err(|e| unavailable("input", e))?,
                "token_type_ids" => TensorRef::from_array_view((shape, &*types)).map_err(|e| unavailable("input", e))?,
            ])
            .map_err(|e| unavailable("inference", e))?;
        let (_, hidden) = outputs["last_hidden_state"]
            .try_extract_tensor::<f32>()
            .map_err(|e| unavailable("output", e))?;
        let mut out = Vec::with_capacity(b);
        for i in 0..b {
            let mut v = vec![0f32; DIM];
            let mut n = 0f32;
            for t in 0..l {
                if mask[i * l + t] == 0 {
                    continue;
                }
                n += 1.0;
                let row = &hidden[(i * l + t) * DIM..(i * l + t + 1) * DIM];
                for (a, x) in v.iter_mut().zip(row) {
                    *a += x;
                }
            }
            let n = n.max(1.0);
            let mut norm = 0f32;
            for a in v.iter_mut() {
                *a /= n;
                norm += *a * *a;
            }
            let norm = norm.sqrt().max(1e-12);
            for a in v.iter_mut() {
                *a /= norm;
            }
            out.push(v);
        }
        Ok(out)
    }
}

impl Embedder for OrtEmbedder {
    fn model_id(&self) -> &str {
        MODEL_ID
    }

    fn dim(&self) -> usize {
        DIM
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        // Batches of similar length pad little: sort by length, embed in groups of 16.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(16) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (i, v) in chunk.iter().zip(self.run(&batch)?) {
                out[*i] = v;
            }
        }
        Ok(out)
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        if let Ok(c) = self.cache.lock()
            && let Some(v) = c.get(text)
        {
            return Ok(v.clone());
        }
        let v = self
            .run(&[text])?
            .pop()
            .ok_or_else(|| Error::internal("no embedding returned"))?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= QUERY_CACHE {
                c.clear();
            }
            c.insert(text.to_string(), v.clone());
        }
        Ok(v)
    }
}

/// Dot product of two equal-length vectors (cosine for unit vectors), written so the compiler
/// vectorises it: eight independent accumulators.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for k in 0..8 {
            acc[k] += a[i * 8 + k] * b[i * 8 + k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len().min(b.len()) {
        s += a[i] * b[i];
    }
    s
}
