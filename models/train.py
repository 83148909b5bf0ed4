#!/usr/bin/env python3
"""Fits the forecasting LSTM on tensors written by `sluice export-features` and exports it to
ONNX with its metadata. It computes no features: the encoding lives once, in Rust
(src/core/forecast/features.rs), and `x.npy` is exactly what the service feeds the model.

    python models/train.py --data DIR [--data DIR2 ...] --out models/lstm.onnx

Model: one LSTM layer (hidden 32; --members K trains K and merges them, see merge()) over the WINDOW × DIM input, then a dense head to HORIZON
outputs: each is ln(1 + requests) - ln(1 + scale) for one of the next minutes. Trained with Adam
on sMAPE of the decoded counts (the metric it is judged by) plus a little L1 in log space,
which keeps gradients alive when counts are 0.

ONNX graph: Transpose (batch-major input to time-major: ONNX Runtime's CPU LSTM rejects
layout=1) -> LSTM (gates in ONNX order i, o, f, c; W and R as [4H, in]) -> Squeeze -> MatMul ->
Add. The JAX cell below uses the same layout, so export copies weights as they are.
"""
import argparse
import datetime
import hashlib
import json
import os
import sys
import time

import numpy as np


def load(dirs):
    xs, ys, ss, metas = [], [], [], []
    for d in dirs:
        meta = json.load(open(os.path.join(d, "meta.json")))
        xs.append(np.load(os.path.join(d, "x.npy")))
        ys.append(np.load(os.path.join(d, "y.npy")))
        ss.append(np.load(os.path.join(d, "scale.npy")))
        metas.append(meta)
    first = metas[0]
    for m in metas[1:]:
        for key in ("features", "window", "horizon"):
            if m[key] != first[key]:
                sys.exit(f"{key} differs between --data directories: {m[key]} vs {first[key]}")
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ss), metas, [len(x) for x in xs]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", required=True, help="export-features output directory")
    ap.add_argument("--out", default="models/lstm.onnx")
    ap.add_argument("--meta", default=None, help="metadata path (default: --out with .json)")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--members", type=int, default=1,
                    help="train this many LSTMs (seeds seed, seed+1, ...) and ship their mean (log space)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--log-l1", type=float, default=0.1, help="weight of the L1 term in log space")
    ap.add_argument("--h1-weight", type=float, default=1.0,
                    help="weight of the one-minute horizon in the loss (the others weigh 1)")
    ap.add_argument("--skip", type=int, default=0,
                    help="also feed the last N minutes' log_requests_rel straight to the head (0: none)")
    ap.add_argument("--notes", default="", help="free text recorded in the metadata (training data, purpose)")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_platform_name", "cpu")
    x, y, scale, metas, sizes = load(args.data)
    n, window, dim = x.shape
    horizon = y.shape[1]
    features = metas[0]["features"]
    print(f"{n} windows of {window} x {dim}, horizon {horizon}", file=sys.stderr)

    # Validation: the newest `val_fraction` of each source (windows arrive in time order per
    # source), so every site is validated on minutes after the ones it was trained on.
    idx_train, idx_val, val_of = [], [], []
    start = 0
    for i, size in enumerate(sizes):
        n_val_i = max(1, int(size * args.val_fraction))
        idx_train.append(np.arange(start, start + size - n_val_i))
        idx_val.append(np.arange(start + size - n_val_i, start + size))
        val_of.append(idx_val[-1])
        start += size
    idx_train, idx_val = np.concatenate(idx_train), np.concatenate(idx_val)
    n_val = len(idx_val)

    H = args.hidden
    SKIP = args.skip
    def initial(seed):
        key = jax.random.PRNGKey(seed)
        k1, k2, k3 = jax.random.split(key, 3)

        def uniform(k, shape, fan):
            lim = 1.0 / np.sqrt(fan)
            return jax.random.uniform(k, shape, minval=-lim, maxval=lim)

        params = {
            "W": uniform(k1, (4 * H, dim), H),  # gates i, o, f, c (ONNX order)
            "R": uniform(k2, (4 * H, H), H),
            "B": jnp.zeros((8 * H,)).at[2 * H:3 * H].set(1.0),  # forget-gate bias 1 (Wb part)
            "Wd": uniform(k3, (H, horizon), H),
            "bd": jnp.zeros((horizon,)),
        }
        if SKIP:
            params["Ws"] = jnp.zeros((SKIP, horizon))
        return params

    req = features.index("log_requests_rel")

    def forward(p, xb):
        b = xb.shape[0]
        wb, rb = p["B"][:4 * H], p["B"][4 * H:]

        def cell(carry, xt):
            h, c = carry
            z = xt @ p["W"].T + h @ p["R"].T + wb + rb
            i = jax.nn.sigmoid(z[:, 0:H])
            o = jax.nn.sigmoid(z[:, H:2 * H])
            f = jax.nn.sigmoid(z[:, 2 * H:3 * H])
            g = jnp.tanh(z[:, 3 * H:4 * H])
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), None

        h0 = jnp.zeros((b, H))
        (h, _), _ = jax.lax.scan(cell, (h0, h0), jnp.transpose(xb, (1, 0, 2)))
        out = h @ p["Wd"] + p["bd"]
        if SKIP:
            out = out + xb[:, -SKIP:, req] @ p["Ws"]
        return out

    def decode(out, s):
        base = jnp.log1p(s)[:, None]
        return jnp.maximum(jnp.expm1(jnp.minimum(out, 20.0) + base), 0.0)

    hw = jnp.ones((horizon,)).at[0].set(args.h1_weight)
    hw = hw * horizon / hw.sum()

    def loss_fn(p, xb, yb, sb):
        out = forward(p, xb)
        pred = decode(out, sb)
        smape = jnp.abs(yb - pred) / ((jnp.abs(yb) + jnp.abs(pred)) / 2 + 1e-3)
        both_zero = (yb == 0) & (pred < 1e-3)
        smape = jnp.where(both_zero, 0.0, smape)
        log_l1 = jnp.abs(out - (jnp.log1p(yb) - jnp.log1p(sb)[:, None]))
        return (smape * hw).mean() + args.log_l1 * log_l1.mean()

    steps_per_epoch = max(1, len(idx_train) // args.batch)
    schedule = optax.cosine_decay_schedule(args.lr, steps_per_epoch * args.epochs, alpha=0.05)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))

    @jax.jit
    def step(p, st, xb, yb, sb):
        l, g = jax.value_and_grad(loss_fn)(p, xb, yb, sb)
        upd, st = opt.update(g, st, p)
        return optax.apply_updates(p, upd), st, l

    @jax.jit
    def eval_loss(p, xb, yb, sb):
        return loss_fn(p, xb, yb, sb)

    def train(seed):
        params = initial(seed)
        state = opt.init(params)
        rng = np.random.default_rng(seed)
        started = time.time()
        for epoch in range(args.epochs):
            order = rng.permutation(idx_train)
            total = 0.0
            for s in range(steps_per_epoch):
                b = order[s * args.batch:(s + 1) * args.batch]
                params, state, l = step(params, state, x[b], y[b], scale[b])
                total += float(l)
            val = float(eval_loss(params, x[idx_val], y[idx_val], scale[idx_val]))
            print(f"seed {seed} epoch {epoch + 1}: train {total / steps_per_epoch:.4f} val {val:.4f} "
                  f"({time.time() - started:.0f} s)", file=sys.stderr)
        return params

    started = time.time()
    members = [train(args.seed + m) for m in range(args.members)]
    if len(members) > 1:
        for m, p in zip(range(args.members), members):
            print(f"member seed {args.seed + m}: val {float(eval_loss(p, x[idx_val], y[idx_val], scale[idx_val])):.4f}",
                  file=sys.stderr)
    # The members, merged into one LSTM of hidden H x members whose head averages theirs:
    # exactly the mean of the members' outputs (log space), one graph for the service.
    params = merge(members, H, SKIP)
    if len(members) > 1:
        probe = x[idx_val[:64]]
        want = np.mean([np.asarray(forward(p, probe)) for p in members], axis=0)
        H = H * len(members)
        err = float(np.abs(np.asarray(forward(params, probe)) - want).max())
        if err > 1e-4:
            sys.exit(f"the merged LSTM is not the members' mean: max |diff| {err}")

    # Validation metrics on decoded counts (one-step and last step).
    pred = np.asarray(decode(forward(params, x[idx_val]), scale[idx_val]))
    yv = y[idx_val]

    def smape(a, b):
        d = np.abs(a - b)
        den = (np.abs(a) + np.abs(b)) / 2
        return float(np.where(den > 0, d / np.where(den > 0, den, 1), 0).mean())

    metrics = {
        "validation_windows": int(n_val),
        "h1_smape": smape(yv[:, 0], pred[:, 0]),
        "h1_mae": float(np.abs(yv[:, 0] - pred[:, 0]).mean()),
        f"h{horizon}_smape": smape(yv[:, -1], pred[:, -1]),
        "final_validation_loss": float(eval_loss(params, x[idx_val], y[idx_val], scale[idx_val])),
        "training_seconds": round(time.time() - started, 1),
        "per_source": [],
    }
    for m, idx in zip(metas, val_of):
        p = np.asarray(decode(forward(params, x[idx]), scale[idx]))
        metrics["per_source"].append({
            "source": m["source"],
            "validation_windows": int(len(idx)),
            "h1_smape": smape(y[idx][:, 0], p[:, 0]),
            f"h{horizon}_smape": smape(y[idx][:, -1], p[:, -1]),
        })
    print(json.dumps(metrics), file=sys.stderr)

    export(params, H, window, dim, horizon, args.out, SKIP, req)

    # Test vectors: the service must reproduce these outputs from these inputs.
    pick = idx_val[np.linspace(0, len(idx_val) - 1, 3).astype(int)]
    raw = np.asarray(forward(params, x[pick]))
    check_with_onnxruntime(args.out, x[pick], raw)
    vectors = [{"input": x[i].reshape(-1).tolist(), "output": raw[j].tolist()} for j, i in enumerate(pick)]

    meta_path = args.meta or os.path.splitext(args.out)[0] + ".json"
    digest = hashlib.sha256(open(args.out, "rb").read()).hexdigest()
    meta = {
        "format": "sluice-forecast-model/1",
        "version": args.version,
        "model_file": os.path.basename(args.out),
        "sha256": digest,
        "input": {"name": "window", "shape": ["batch", window, dim], "dtype": "float32"},
        "output": {"name": "forecast", "shape": ["batch", horizon], "dtype": "float32"},
        "window": window,
        "horizon": horizon,
        "features": features,
        "normalisation": metas[0]["normalisation"],
        "architecture": {"lstm_hidden": H, "layers": 1, "head": "dense", "members": args.members,
                         "member_hidden": args.hidden,
                         "merge": "block-diagonal: the mean of the members' outputs in log space"},
        "training": {
            "trained_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": [{"source": m["source"], "samples": m["samples"]} for m in metas],
            "notes": args.notes,
            "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "seed": args.seed,
            "loss": "sMAPE of decoded counts + 0.1 * L1 in log space",
        },
        "metrics": metrics,
        "test_vectors": vectors,
    }
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out} and {meta_path}", file=sys.stderr)


def merge(members, H, skip):
    """K LSTMs of hidden H as one of hidden K*H: each gate's rows stacked member by member, the
    recurrent weights block-diagonal (no member sees another's state), the head each member's
    divided by K. Its output is exactly the mean of the members' outputs."""
    K = len(members)
    if K == 1:
        return members[0]
    m = [{k: np.asarray(v, np.float32) for k, v in p.items()} for p in members]
    HK = H * K
    dim = m[0]["W"].shape[1]
    W = np.zeros((4 * HK, dim), np.float32)
    R = np.zeros((4 * HK, HK), np.float32)
    B = np.zeros((8 * HK,), np.float32)
    for k, p in enumerate(m):
        for g in range(4):
            rows = slice(g * HK + k * H, g * HK + (k + 1) * H)
            W[rows] = p["W"][g * H:(g + 1) * H]
            R[rows, k * H:(k + 1) * H] = p["R"][g * H:(g + 1) * H]
            B[rows] = p["B"][g * H:(g + 1) * H]
            B[4 * HK + g * HK + k * H:4 * HK + g * HK + (k + 1) * H] = p["B"][4 * H + g * H:4 * H + (g + 1) * H]
    merged = {
        "W": W, "R": R, "B": B,
        "Wd": np.concatenate([p["Wd"] for p in m]) / K,
        "bd": np.mean([p["bd"] for p in m], axis=0),
    }
    if skip:
        merged["Ws"] = np.mean([p["Ws"] for p in m], axis=0)
    return merged


def export(params, H, window, dim, horizon, path, skip, req):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    W = np.asarray(params["W"], np.float32)[None]
    R = np.asarray(params["R"], np.float32)[None]
    B = np.asarray(params["B"], np.float32)[None]
    Wd = np.asarray(params["Wd"], np.float32)
    bd = np.asarray(params["bd"], np.float32)
    inits = [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(R, "R"),
        numpy_helper.from_array(B, "B"),
        numpy_helper.from_array(Wd, "Wd"),
        numpy_helper.from_array(bd, "bd"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
    ]
    nodes = [
        helper.make_node("Transpose", ["window"], ["time_major"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["time_major", "W", "R", "B"], ["Y", "Y_h"], hidden_size=H),
        helper.make_node("Squeeze", ["Y_h", "axis0"], ["last_hidden"]),
        helper.make_node("MatMul", ["last_hidden", "Wd"], ["dense"]),
        helper.make_node("Add", ["dense", "bd"], ["forecast" if not skip else "recurrent"]),
    ]
    if skip:
        # The skip path: the last `skip` minutes of the request feature, straight to the head.
        inits += [
            numpy_helper.from_array(np.asarray(params["Ws"], np.float32), "Ws"),
            numpy_helper.from_array(np.array([window - skip, req], np.int64), "skip_starts"),
            numpy_helper.from_array(np.array([window, req + 1], np.int64), "skip_ends"),
            numpy_helper.from_array(np.array([1, 2], np.int64), "skip_axes"),
            numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        ]
        nodes += [
            helper.make_node("Slice", ["window", "skip_starts", "skip_ends", "skip_axes"], ["recent3"]),
            helper.make_node("Squeeze", ["recent3", "axis2"], ["recent"]),
            helper.make_node("MatMul", ["recent", "Ws"], ["skip_out"]),
            helper.make_node("Add", ["recurrent", "skip_out"], ["forecast"]),
        ]
    graph = helper.make_graph(
        nodes, "sluice_forecast",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", window, dim])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["batch", horizon])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sluice-models-train")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def check_with_onnxruntime(path, inputs, expected):
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: skipping the Python-side check", file=sys.stderr)
        return
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(["forecast"], {"window": inputs.astype(np.float32)})[0]
    err = float(np.abs(got - expected).max())
    if err > 1e-4:
        sys.exit(f"ONNX Runtime disagrees with the trained model: max |diff| {err}")
    print(f"ONNX Runtime matches the trained model (max |diff| {err:.2e})", file=sys.stderr)


if __name__ == "__main__":
    main()
