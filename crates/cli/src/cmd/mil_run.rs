//! `ane-train mil run`: one evaluation of a MIL file on a device, with .npy inputs and outputs.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ane_mil::DType;
use ane_runtime::{Device, Surface, Weights};
use anyhow::{bail, Context, Result};
use half::f16;
use npyz::WriterBuilder;

use super::mil::RunArgs;

/// Runs `mil run`.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let program =
        ane_mil::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", args.file.display()))?;
    let root = match &args.weights {
        Some(d) => d.clone(),
        None => args
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let device = ane_runtime::open(&args.device)
        .with_context(|| format!("opening device `{}`", args.device))?;
    let kernel = device
        .compile(&program, &Weights::from_dir(&root))
        .with_context(|| format!("compiling {}", args.file.display()))?;
    let info = kernel.info().clone();

    let mut given: Vec<(String, PathBuf)> = Vec::new();
    for spec in &args.inputs {
        let Some((name, path)) = spec.split_once('=') else {
            bail!("--input {spec:?}: expected NAME=PATH.npy");
        };
        if given.iter().any(|(n, _)| n == name) {
            bail!("--input {name} is given twice");
        }
        given.push((name.to_string(), PathBuf::from(path)));
    }
    let names: Vec<&str> = info.inputs.iter().map(|d| d.name.as_str()).collect();
    for (name, _) in &given {
        if !names.contains(&name.as_str()) {
            bail!(
                "the kernel has no input `{name}` (its inputs: {})",
                names.join(", ")
            );
        }
    }
    let mut inputs: Vec<(String, Surface)> = Vec::new();
    for desc in &info.inputs {
        let (_, path) = given
            .iter()
            .find(|(n, _)| *n == desc.name)
            .with_context(|| {
                format!(
                    "input `{}` ({}) is not given: add --input {}=PATH.npy",
                    desc.name, desc.ty, desc.name
                )
            })?;
        let values = read_npy(path, &desc.ty.shape)
            .with_context(|| format!("input `{}` from {}", desc.name, path.display()))?;
        let surface = new_surface(device.as_ref(), &desc.ty.shape, desc.ty.dtype)?;
        surface.write_f32(&values)?;
        inputs.push((desc.name.clone(), surface));
    }
    let mut outputs: Vec<(String, Surface)> = Vec::new();
    for desc in &info.outputs {
        outputs.push((
            desc.name.clone(),
            new_surface(device.as_ref(), &desc.ty.shape, desc.ty.dtype)?,
        ));
    }
    let ins: Vec<(&str, &Surface)> = inputs.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let outs: Vec<(&str, &Surface)> = outputs.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let binding = kernel.bind(&ins, &outs)?;
    binding.eval()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (name, surface) in &outputs {
        let path = args.out.join(format!("{name}.npy"));
        write_npy(&path, surface).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{}  {:?} {}",
            path.display(),
            surface.shape(),
            surface.dtype()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A surface of the declared dtype where the device accepts it, else the device's first.
fn new_surface(device: &dyn Device, shape: &[usize], dtype: DType) -> Result<Surface> {
    let caps = device.capabilities();
    let dt = if caps.surface_dtypes.contains(&dtype) {
        dtype
    } else {
        caps.surface_dtypes[0]
    };
    Ok(device.surface(shape, dt)?)
}

/// Reads an fp16 or fp32 C-order .npy file whose shape must equal `shape`.
fn read_npy(path: &Path, shape: &[usize]) -> Result<Vec<f32>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let npy = npyz::NpyFile::new(BufReader::new(file)).context("not a valid .npy file")?;
    let got: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if got != shape {
        bail!("shape {got:?} does not match the declared {shape:?}");
    }
    if npy.order() != npyz::Order::C {
        bail!("Fortran-order arrays are not supported; save with numpy's default C order");
    }
    let descr = npy.dtype().descr();
    match descr.trim_matches('\'') {
        "<f4" => Ok(npy.into_vec::<f32>()?),
        "<f2" => Ok(npy
            .into_vec::<f16>()?
            .into_iter()
            .map(f16::to_f32)
            .collect()),
        other => bail!("dtype {other} is not supported (use float16 '<f2' or float32 '<f4')"),
    }
}

/// Writes a surface as .npy in its own dtype.
fn write_npy(path: &Path, surface: &Surface) -> Result<()> {
    match surface.dtype() {
        DType::Fp16 => write_values(path, surface, surface.read::<f16>()?.to_vec()),
        _ => write_values(path, surface, surface.read_f32()?),
    }
}

fn write_values<T: npyz::AutoSerialize>(
    path: &Path,
    surface: &Surface,
    data: Vec<T>,
) -> Result<()> {
    let shape: Vec<u64> = surface.shape().iter().map(|&d| d as u64).collect();
    let file = BufWriter::new(File::create(path)?);
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(file)
        .begin_nd()?;
    w.extend(data)?;
    w.finish()?;
    Ok(())
}
