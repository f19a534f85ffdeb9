"""Training speed: `pixelforge train diffusion` against a plain diffusers loop, same UNet, batch and optimiser.

Both train the text-conditioned tiny UNet2DConditionModel (blocks 32/64/96, cross-attention on
the lowest level, MiniLM token embeddings) with v-prediction on a cosine, zero-terminal-SNR
schedule, AdamW 4e-4, batch 64, gradient clipping, EMA 0.999 and 10% condition dropout, on the
same 32 px shapes images (pixelforge with `--snr-gamma 0 --no-text-pooled --no-attention-positions
--no-cpu-bf16`, so the loss, the network and the precision are exactly the reference's). The
reference loop is written the way diffusers' train_unconditional / text-to-image examples do it,
with every image decoded into memory first and caption embeddings precomputed (the fastest a plain
loop can be fed), so any gap is the pipeline's own overhead.
Each runs in its own process, alternating, and images/s is measured after --warmup steps.

    .venv/bin/python benchmarks/train_vs_diffusers.py [--steps 60] [--warmup 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import QUIET_ENV, ROOT  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")
PF = str(ROOT / ".venv" / "bin" / "pixelforge")

REFERENCE = r"""
import sys, time, torch, torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from pixelforge.store import Dataset
from pixelforge.models.text import MiniLMEncoder
import numpy as np
data, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
ds = Dataset.open(data)
imgs, caps = [], []
for s in ds.iter_samples():
    imgs.append(torch.from_numpy(np.asarray(s.decode())).permute(2, 0, 1))
    caps.append(s.row["caption"])
x_all = torch.stack(imgs).float() / 127.5 - 1
enc = MiniLMEncoder(16)
uniq = sorted(set(caps)) + [""]
emb = dict(zip(uniq, enc.encode(uniq)))
e_all = torch.stack([emb[c] for c in caps])
empty = emb[""]
unet = UNet2DConditionModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
    block_out_channels=(32, 64, 96), down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"), cross_attention_dim=384,
    attention_head_dim=8, norm_num_groups=8)
sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                      rescale_betas_zero_snr=True, timestep_spacing="trailing")
opt = torch.optim.AdamW(unet.parameters(), lr=4e-4)
ema = EMAModel(unet.parameters(), decay=0.999)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_all, e_all), batch_size=64, shuffle=True,
                                     drop_last=True)
step, t0 = 0, None
while step < steps:
    for x, e in loader:
        if step == warmup:
            t0 = time.perf_counter()
        if step >= steps:
            break
        drop = torch.rand(x.shape[0]) < 0.1
        e = torch.where(drop[:, None, None], empty, e)
        noise = torch.randn_like(x)
        t = torch.randint(0, 1000, (x.shape[0],))
        xt = sched.add_noise(x, noise, t)
        target = sched.get_velocity(x, noise, t)
        loss = F.mse_loss(unet(xt, t, encoder_hidden_states=e).sample, target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
        step += 1
print((steps - warmup) * 64 / (time.perf_counter() - t0))
"""


def run_pixelforge(data: str, work: Path, steps: int, warmup: int, r: int) -> float:
    out = work / f"pf-{r}"
    subprocess.run(
        [
            PF,
            "train",
            "diffusion",
            "--data",
            data,
            "--out",
            str(out),
            "--condition",
            "text",
            "--image-size",
            "32",
            "--batch-size",
            "64",
            "--max-steps",
            str(steps),
            "--eval-every",
            str(10 * steps),
            "--log-every",
            str(warmup),
            "--warmup-steps",
            "0",
            "--sample-steps",
            "2",
            "--val-batches",
            "1",
            "--device",
            "cpu",
            "--snr-gamma",
            "0",
            "--no-text-pooled",
            "--no-attention-positions",
            "--no-cpu-bf16",  # float32, as the diffusers loop
        ],
        check=True,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with open(out / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["images_per_s"]]
    # the first window holds the warm-up; later windows are steady state
    rates = [float(r["images_per_s"]) for r in rows[1:]]
    return sum(rates) / len(rates)


def run_reference(data: str, steps: int, warmup: int) -> float:
    out = subprocess.run(
        [PY, "-c", REFERENCE, data, str(steps), str(warmup)], check=True, env=_env(), capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def _env() -> dict:
    import os

    return dict(os.environ, **QUIET_ENV)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pf-bench-train-"))
    data = str(work / "shapes")
    subprocess.run(
        [PF, "import", "shapes", "--n", str(args.n), "--size", "32", "--out", data],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, list[float]] = {"diffusers loop": [], "pixelforge": []}
    for r in range(args.rounds):
        order = ("diffusers loop", "pixelforge") if r % 2 == 0 else ("pixelforge", "diffusers loop")
        for tool in order:
            rate = (
                run_reference(data, args.steps, args.warmup)
                if tool == "diffusers loop"
                else run_pixelforge(data, work, args.steps, args.warmup, r)
            )
            results[tool].append(rate)
            print(f"round {r} {tool:15s} {rate:6.1f} images/s")
    best = {k: max(v) for k, v in results.items()}
    print(
        f"\ndiffusers loop {best['diffusers loop']:.1f} images/s, pixelforge {best['pixelforge']:.1f} images/s, "
        f"ratio {best['pixelforge'] / best['diffusers loop']:.2f}x"
    )


if __name__ == "__main__":
    main()
