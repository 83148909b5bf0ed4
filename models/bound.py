#!/usr/bin/env python3
"""How low can one-minute-ahead sMAPE go on a forecast series? An experiment, not part of the
service: it backs the claim in models/README.md that the NASA August data cannot give a one-step
sMAPE 10% below the mean-of-last-5 baseline.

It fits a small network (60 minutes of history + time of day -> next minute, trained on sMAPE, like
the shipped LSTM) and then the same network allowed to *see the future*: the K minutes after the
one it predicts. A causal forecaster knows strictly less than the K>0 "oracles", so if they cannot
reach a target, no forecaster can, short of knowing the minute itself.

    target/trainenv/bin/python models/bound.py --series ../shared/data/nasa-http-1995-per-minute.csv

Minutes evaluated are those `sluice eval-forecast` scores (the same filter: 61 minutes of history,
the day-ago and week-ago minute present), so the baseline figures match its table. As there, an
endpoint idle for the last minutes is forecast at 0 (here: 5 idle minutes).
"""
import argparse
import csv
import datetime

import numpy as np

HISTORY = 60


def load(path):
    rows = list(csv.DictReader(open(path)))
    parse = lambda s: datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S")
    t0 = parse(rows[0]["minute"])
    idx = [int((parse(r["minute"]) - t0).total_seconds() // 60) for r in rows]
    y = np.full(max(idx) + 1 + 32, np.nan)  # padded: oracles look past the end
    y[idx] = [float(r["requests"]) for r in rows]
    return t0, y


def smape(a, p):
    d = np.abs(a - p)
    den = (np.abs(a) + np.abs(p)) / 2
    return np.where(den > 0, d / np.where(den > 0, den, 1), 0)


def features(y, ms, future):
    past = np.stack([y[ms - d] for d in range(HISTORY, 0, -1)], 1)
    scale = np.maximum(1, past.mean(1, keepdims=True))
    cols = [np.log1p(past) - np.log1p(scale)]
    if future:
        fut = np.stack([np.nan_to_num(y[ms + d], nan=0.0) for d in range(1, future + 1)], 1)
        cols.append(np.log1p(fut) - np.log1p(scale))
    tod = 2 * np.pi * (ms % 1440) / 1440
    cols += [np.sin(tod)[:, None], np.cos(tod)[:, None]]
    return np.concatenate(cols, 1).astype(np.float32), scale[:, 0].astype(np.float32)


def fit_and_score(y, train_ms, eval_ms, future, epochs, seed):
    import jax
    import jax.numpy as jnp
    import optax

    xt, st = features(y, train_ms, future)
    yt = y[train_ms].astype(np.float32)
    xe, se = features(y, eval_ms, future)
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    d = xt.shape[1]
    params = {"W1": jax.random.normal(k1, (d, 64)) * 0.05, "b1": jnp.zeros(64),
              "W2": jax.random.normal(k2, (64, 1)) * 0.05, "b2": jnp.zeros(1)}

    def predict(p, x, s):
        h = jnp.tanh(x @ p["W1"] + p["b1"])
        return jnp.maximum(jnp.expm1((h @ p["W2"] + p["b2"])[:, 0] + jnp.log1p(s)), 0.0)

    def loss(p, x, s, t):
        pr = predict(p, x, s)
        den = (jnp.abs(t) + pr) / 2
        return jnp.where(den > 0, jnp.abs(t - pr) / jnp.where(den > 0, den, 1), 0).mean()

    opt = optax.adam(3e-3)
    state = opt.init(params)

    @jax.jit
    def step(p, o, x, s, t):
        g = jax.grad(loss)(p, x, s, t)
        u, o = opt.update(g, o)
        return optax.apply_updates(p, u), o

    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(train_ms))
        for i in range(0, len(order), 256):
            b = order[i:i + 256]
            params, state = step(params, state, xt[b], st[b], yt[b])
    pred = np.asarray(predict(params, xe, se))
    idle = np.all(np.stack([y[eval_ms - d] for d in range(1, 6)], 1) == 0, 1)
    pred = np.where(idle, 0.0, pred)
    return smape(y[eval_ms], pred).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", required=True)
    ap.add_argument("--from", dest="start", default="1995-08-01 00:00:00",
                    help="first minute evaluated; the network trains on the minutes before it")
    ap.add_argument("--future", default="0,1,2,4", help="future minutes the networks may see")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0, y = load(args.series)
    start = int((datetime.datetime.strptime(args.start, "%Y-%m-%d %H:%M:%S") - t0).total_seconds() // 60)
    n = len(y) - 32
    ok = lambda m: np.isfinite(y[m]) and np.all(np.isfinite(y[m - HISTORY - 1:m]))
    eval_ms = np.array([m for m in range(max(start, 10080), n)
                        if ok(m) and np.isfinite(y[m - 1440]) and np.isfinite(y[m - 10080])])
    train_ms = np.array([m for m in range(HISTORY + 1, start - 32)
                         if ok(m) and np.all(np.isfinite(y[m + 1:m + 5]))])
    target = y[eval_ms]
    mean5 = smape(target, np.stack([y[eval_ms - d] for d in range(1, 6)], 1).mean(1)).mean()
    last = smape(target, y[eval_ms - 1]).mean()
    print(f"{len(eval_ms)} minutes evaluated, {len(train_ms)} trained on")
    print(f"{'forecaster':<44} sMAPE  vs mean5")
    print(f"{'last value':<44} {last:.4f} {last / mean5 - 1:+.1%}")
    print(f"{'mean of the last 5 minutes (best baseline)':<44} {mean5:.4f}")
    print(f"{'the issue floor: 10% below mean5':<44} {0.9 * mean5:.4f} -10.0%")
    for k in [int(v) for v in args.future.split(",")]:
        s = fit_and_score(y, train_ms, eval_ms, k, args.epochs, args.seed)
        name = "network, causal" if k == 0 else f"network seeing {k} future minute{'s' if k > 1 else ''}"
        print(f"{name:<44} {s:.4f} {s / mean5 - 1:+.1%}")


if __name__ == "__main__":
    main()
