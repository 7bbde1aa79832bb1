//! The CUDA side of the hand-written kernels (feature `cuda`): the PTX that build.rs
//! compiled from the `.cu` files beside this one, loaded through candle's CUDA device, and
//! the helpers the ops' `cuda_fwd` use to launch them. Each kernel is the twin of a CPU
//! kernel and lives, as Rust, next to it (depthwise.rs, activation.rs, batchnorm.rs,
//! maxpool.rs); the anomaly map's kernels are driven from `map.rs`.
//!
//! Every launch goes through [`launch!`], which counts it: [`launches`] lets `bench` and
//! the parity test report launches per inference, so a fall back to candle's per-group
//! convolution (thousands of launches) cannot go unnoticed.

pub mod map;

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::{bail, Layout, Result};

pub(crate) use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::cudarc::driver::{CudaFunction, CudaStream, LaunchArgs};
use std::sync::Arc;

/// (module, [(compute capability, PTX)]) for every `.cu` file, written by build.rs.
const PTX: &[(&str, &[(u32, &str)])] = include!(concat!(env!("OUT_DIR"), "/cuda_ptx.rs"));

static LAUNCHES: AtomicU64 = AtomicU64::new(0);

/// Kernel launches of this crate's CUDA kernels since the process started.
pub fn launches() -> u64 {
    LAUNCHES.load(Ordering::Relaxed)
}

pub(crate) fn count_launch() {
    LAUNCHES.fetch_add(1, Ordering::Relaxed);
}

/// The device's compute capability as one number (8.7 -> 87).
fn compute_capability(dev: &CudaDevice) -> Result<u32> {
    let (major, minor) = dev.cuda_stream().context().compute_capability().w()?;
    Ok((major * 10 + minor) as u32)
}

/// A loaded kernel and the device's stream it launches on.
pub(crate) struct Kernel {
    func: CudaFunction,
    stream: Arc<CudaStream>,
}

impl Kernel {
    pub(crate) fn builder(&self) -> LaunchArgs<'_> {
        self.stream.launch_builder(&self.func)
    }
}

/// Kernel `name` of module `module` (a `.cu` file's name), from the PTX of the highest
/// architecture the device runs; loaded once per device and module by candle.
pub(crate) fn kernel(dev: &CudaDevice, module: &str, name: &str) -> Result<Kernel> {
    let cc = compute_capability(dev)?;
    let Some((_, builds)) = PTX.iter().find(|(m, _)| *m == module) else {
        bail!("no CUDA kernel module {module:?} in this build")
    };
    let Some((arch, ptx)) = builds
        .iter()
        .filter(|(a, _)| *a <= cc)
        .max_by_key(|(a, _)| *a)
    else {
        let built: Vec<String> = builds.iter().map(|(a, _)| format!("sm_{a}")).collect();
        bail!(
            "this GPU has compute capability {}.{}, but cdo-inspect's CUDA kernels were built \
             for {} (set CDO_CUDA_ARCHS when building, e.g. CDO_CUDA_ARCHS=75,87,90)",
            cc / 10,
            cc % 10,
            built.join(", ")
        )
    };
    let func =
        dev.get_or_load_custom_func(name, &format!("cdo_inspect_{module}_sm_{arch}"), ptx)?;
    Ok(Kernel {
        func: func.into_cuda_function(),
        stream: dev.cuda_stream(),
    })
}

/// Launches `$func` with `$cfg` and the arguments, and counts the launch.
macro_rules! launch {
    ($func:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        use $crate::model::kernels::cuda::PushKernelArg as _;
        use candle_core::cuda_backend::WrapErr as _;
        let func = &$func;
        let mut builder = func.builder();
        // Each argument bound to a local first: a temporary (`&i32_of(n)?`) then lives
        // until the launch.
        $( let arg = $arg; builder.arg(arg); )*
        // SAFETY: the arguments match the kernel's signature in its .cu file (checked by the
        // parity test on a GPU); buffers are sized from the same geometry the kernel reads.
        unsafe { builder.launch($cfg) }.w()?;
        $crate::model::kernels::cuda::count_launch();
    }};
}
pub(crate) use launch;

/// Threads per block of the element-wise kernels and the reductions.
pub(crate) const BLOCK: u32 = 256;

/// A grid-stride launch over `n` elements (the kernels loop, so the grid is capped).
pub(crate) fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per reduction (`blocks` of them), with BLOCK doubles of shared memory.
pub(crate) fn reduction(blocks: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: BLOCK * std::mem::size_of::<f64>() as u32,
    }
}

/// The contiguous f32 data of an op's CUDA operand, or an error naming the op and operand.
pub(crate) fn input<'a>(
    op: &str,
    what: &str,
    s: &'a CudaStorage,
    l: &Layout,
) -> Result<CudaView<'a, f32>> {
    let Ok(slice) = s.as_cuda_slice::<f32>() else {
        bail!("{op}: {what} must be f32")
    };
    match l.contiguous_offsets() {
        Some((start, end)) if end > start => Ok(slice.slice(start..end)),
        Some(_) => bail!("{op}: {what} is empty"),
        None => bail!("{op}: {what} must be contiguous"),
    }
}

/// A new uninitialised f32 buffer of `n` values, every one of which the kernel writes.
pub(crate) fn output(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: callers launch a kernel that writes all `n` values before anything reads them.
    unsafe { dev.alloc::<f32>(n) }
}

/// `n` as the kernels' `long long`.
pub(crate) fn i64_of(n: usize) -> i64 {
    n as i64
}

/// `n` as the kernels' `int` (the model's sizes are far below 2^31; checked anyway).
pub(crate) fn i32_of(n: usize) -> Result<i32> {
    match i32::try_from(n) {
        Ok(v) => Ok(v),
        Err(_) => bail!("CUDA kernel size {n} does not fit a 32-bit int"),
    }
}
