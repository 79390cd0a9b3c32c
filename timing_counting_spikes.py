"""LSTM with and without peephole connections on a precise-timing task, in NumPy.

Reproduction of Gers, Schraudolph & Schmidhuber, "Learning Precise Timing with LSTM Recurrent Networks",
JMLR 3:115-143 (2002). Read top to bottom: task -> model (forward, backward) -> optimizer -> train/evaluate ->
gradcheck -> sweeps and report -> CLI.

Task (MSD as this project defines it). A sequence of length T has one input channel, 0 except 1.0 at t1 and
t2 = t1 + D, D uniform in [D_min, D_max], t1 uniform in [0, T-1-2D]. The target is 0 except 1.0 at t1 + 2D: the
network must measure the gap D and fire once more after the same gap. A sequence is solved when
argmax(pred[t2+1:T]) lands exactly on t1 + 2D.

Model. One LSTM layer of H cells, gate order i f g o in one fused pre-activation, then a scalar linear readout:

    z   = x_t Wx + h_{t-1} Wh + b                      Wx: n_in x 4H, Wh: H x 4H, b: 4H
    i   = σ(z_i + p_i ⊙ c_{t-1})                       p_i p_f p_o: peephole weights, one per cell
    f   = σ(z_f + p_f ⊙ c_{t-1})
    g   = tanh(z_g)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    o   = σ(z_o + p_o ⊙ c_t)
    h_t = o ⊙ tanh(c_t)
    pred_t = h_t Wy + by                               Wy: H, by: 1

The vanilla cell (peep=False) is the same with p_i, p_f, p_o absent. Loss: ½ Σ_t (pred_t - y_t)², averaged over the
batch. h_{-1} = c_{-1} = 0.

Speed. One step's arithmetic for the batch costs less than one NumPy call, so the code counts calls. Internally
everything is feature-major, (features, B) per step, so each gate block is a contiguous chunk. The stacked state
s_t = [x_t; h_{t-1}; c_{t-1}; 1] meets one fused matrix W = [Wx^T  Wh^T  P  b] in one np.dot per step, where
P = [diag(p_i); diag(p_f); 0; 0] carries the input- and forget-gate peepholes (vanilla: no c rows, no P). The
sigmoid is σ(a) = (1 + tanh(a/2)) / 2 with the halving folded into the weights, so one tanh covers i, f and g.
"""
import os

# Every matrix here is tiny: BLAS threads only add overhead, and one thread per process keeps results bit-identical
# between a model trained alone and one trained in a --workers pool. Takes effect only if NumPy is not loaded yet.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields, replace
import multiprocessing

import numpy as np

GATES = "ifgo"
PARAM_NAMES = ("Wx", "Wh", "b", "p_i", "p_f", "p_o", "Wy", "by")
PEEPHOLES = ("p_i", "p_f", "p_o")


@dataclass(frozen=True)
class Config:
    """The recipe. Defaults are the headline experiment."""
    T: int = 150
    D_min: int = 30
    D_max: int = 60
    hidden: int = 8
    batch: int = 32
    iters: int = 3000
    lr: float = 5e-3
    lr_decay_factor: float = 0.5
    lr_decay_every: int = 1500
    clip: float = 1.0
    forget_bias: float = 1.0
    n_test: int = 512
    test_seed: int = 1234
    eval_every: int = 100
    peep: bool = True
    dtype: str = "float64"


# Each random stream has its own generator, derived from one seed and a stream number.
STREAM_INIT, STREAM_TRAIN, STREAM_TEST = 0, 1, 2


def rng_for(stream, seed):
    return np.random.default_rng([stream, seed])


# ----------------------------------------------------------------------------------------------------------------
# Task
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Batch:
    """B sequences of length T. x: (T, B, 1) input spikes, y: (T, B) target; t1, t2, t_target: (B,) int."""
    x: np.ndarray
    y: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    t_target: np.ndarray


def msd_batch(rng, n, T=150, D_min=30, D_max=60, dtype="float64"):
    """MSD: spikes at t1 and t2 = t1 + D, target spike at t1 + 2D. D ~ U{D_min..D_max}, t1 ~ U{0..T-1-2D}."""
    D = rng.integers(D_min, D_max + 1, size=n)
    t1 = rng.integers(0, T - 2 * D)
    t2, tt = t1 + D, t1 + 2 * D
    b = np.arange(n)
    x = np.zeros((T, n, 1), dtype)
    x[t1, b, 0] = 1.0
    x[t2, b, 0] = 1.0
    y = np.zeros((T, n), dtype)
    y[tt, b] = 1.0
    return Batch(x, y, t1, t2, tt)


def check_task(T, D_min, D_max):
    """The task's constraints, as one-line messages (empty list: valid)."""
    errors = []
    if D_min < 1:
        errors.append(f"--D-min must be >= 1 (got {D_min})")
    if D_min > D_max:
        errors.append(f"--D-min ({D_min}) must not exceed --D-max ({D_max})")
    if T < 2 * D_max + 1:
        errors.append(f"--T must be >= 2*D_max + 1 = {2 * D_max + 1} so the target fits (got {T})")
    return errors


def score(pred, batch):
    """MSE over all steps and sequences; exact and within-one solve rates of argmax(pred[t2+1:T])."""
    pred = np.asarray(pred, np.float64)
    T = pred.shape[0]
    after_t2 = np.arange(T)[:, None] > batch.t2[None, :]
    peak = np.argmax(np.where(after_t2, pred, -np.inf), axis=0)  # ties: the first maximum
    miss = peak - batch.t_target
    return {"mse": float(np.mean((pred - batch.y) ** 2)),
            "solved": float(np.mean(miss == 0)),
            "within1": float(np.mean(np.abs(miss) <= 1))}


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------

def init_params(rng, H, peep=True, n_in=1, forget_bias=1.0, dtype="float64"):
    """Wx ~ N(0,1)*0.5, Wh ~ N(0,1)*0.5/sqrt(H), Wy ~ N(0,1)/sqrt(H), biases 0 but the forget gate's, then
    p_* ~ N(0,1)*0.1 drawn last: at one seed both variants share every other weight."""
    p = {"Wx": rng.standard_normal((n_in, 4 * H)) * 0.5,
         "Wh": rng.standard_normal((H, 4 * H)) * 0.5 / math.sqrt(H),
         "b": np.zeros(4 * H),
         "Wy": rng.standard_normal(H) / math.sqrt(H),
         "by": np.zeros(1)}
    p["b"][H:2 * H] = forget_bias
    if peep:
        for k in PEEPHOLES:
            p[k] = rng.standard_normal(H) * 0.1
    return {k: p[k].astype(dtype) for k in PARAM_NAMES if k in p}


def is_peep(params):
    return "p_i" in params


def fused_weights(params):
    """W (4H, n_s): s_t = [x_t; h_{t-1}; c_{t-1} (peephole only); 1] -> z. Returns W and W with the i, f, o rows
    halved (the forward's tanh then yields σ via (1 + tanh(a/2)) / 2)."""
    Wx, Wh, b = params["Wx"], params["Wh"], params["b"]
    H = Wh.shape[0]
    blocks = [Wx.T, Wh.T]
    if is_peep(params):
        P = np.zeros((4 * H, H), Wh.dtype)
        P[np.arange(H), np.arange(H)] = params["p_i"]
        P[H + np.arange(H), np.arange(H)] = params["p_f"]
        blocks.append(P)
    W = np.concatenate(blocks + [b[:, None]], axis=1)
    half = np.full((4 * H, 1), 0.5, W.dtype)
    half[2 * H:3 * H] = 1.0
    return W, W * half


@dataclass
class Buffers:
    """Preallocated arrays for one (T, B, H, peep) shape; after forward() it is the cache backward() reads.

    S: (T+1, n_s, B) stacked states, S[t] = [x_t; h_{t-1}; c_{t-1}; 1];  C: (T+1, H, B) cell states, C[t+1] = c_t
    (a view into S for the peephole cell); G: (T, 4H, B) gate values i f g o (pre-activations until squashed);
    TC: (T, H, B) tanh(c_t); fwd: the per-step views the forward loop walks, built once; W: the fused weights of
    the last forward().
    With grad=False (inference) G and TC hold one step that every step reuses, and the backward's arrays are absent:
    dZ: (T, 4H+1, B) gradient of the pre-activations, with dpred_{t-1} in the last row; Ko, Kc (T, H, B),
    K3 (T, 3, H, B): the backward's per-step factors; dc, dcn (H, B), dhc (H or 2H, B): its running gradients;
    dW_t (T, 4H, n_s), scratch (T, H, B): room for products that would otherwise be allocated on every call;
    bwd: its per-step views, from t = T-1 down to 0."""
    T: int
    B: int
    H: int
    n_in: int
    peep: bool
    S: np.ndarray
    C: np.ndarray
    G: np.ndarray
    TC: np.ndarray
    tmp: np.ndarray
    fwd: list = field(repr=False)
    W: np.ndarray = None
    dZ: np.ndarray = None
    Ko: np.ndarray = None
    Kc: np.ndarray = None
    K3: np.ndarray = None
    dc: np.ndarray = None
    dcn: np.ndarray = None
    dhc: np.ndarray = None
    dW_t: np.ndarray = None
    scratch: np.ndarray = None
    bwd: list = field(default=None, repr=False)


def make_buffers(T, B, H, peep=True, n_in=1, dtype="float64", grad=True):
    n_s = n_in + H + (H if peep else 0) + 1
    S = np.zeros((T + 1, n_s, B), dtype)
    S[:, -1] = 1.0
    C = S[:, n_in + H:n_in + 2 * H] if peep else np.zeros((T + 1, H, B), dtype)
    Hs = S[:, n_in:n_in + H]
    G = np.zeros((T if grad else 1, 4 * H, B), dtype)
    TC = np.zeros((T if grad else 1, H, B), dtype)
    squash = 3 * H if peep else 4 * H  # rows one tanh covers before c_t is known
    fwd = []
    for t in range(T):
        g, tc = (G[t], TC[t]) if grad else (G[0], TC[0])
        fwd.append((S[t], g, g[:squash], g[:2 * H], g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:],
                    C[t], C[t + 1], tc, Hs[t + 1]))
    buf = Buffers(T, B, H, n_in, peep, S, C, G, TC, np.zeros((H, B), dtype), fwd)
    if grad:
        buf.dZ = np.zeros((T, 4 * H + 1, B), dtype)
        buf.Ko, buf.Kc = np.zeros((T, H, B), dtype), np.zeros((T, H, B), dtype)
        buf.K3 = np.zeros((T, 3, H, B), dtype)
        buf.dc, buf.dcn = np.zeros((H, B), dtype), np.zeros((H, B), dtype)
        buf.dhc = np.zeros((2 * H if peep else H, B), dtype)
        buf.dW_t = np.zeros((T, 4 * H, n_s), dtype)
        buf.scratch = np.zeros((T, H, B), dtype)
        buf.bwd = [(buf.dZ[t], buf.dZ[t, :3 * H].reshape(3, H, B), buf.dZ[t, 3 * H:4 * H], G[t, H:2 * H],
                    buf.Kc[t], buf.Ko[t], buf.K3[t]) for t in reversed(range(T))]
    return buf


def buffers_for(params, x):
    T, B, n_in = x.shape
    return make_buffers(T, B, params["Wh"].shape[0], is_peep(params), n_in, params["Wh"].dtype)


def forward(params, x, buf=None):
    """x: (T, B, n_in) -> pred (T, B). Fills buf (made here if None), which backward() then reads."""
    if buf is None:
        buf = buffers_for(params, x)
    peep, H, n_in = buf.peep, buf.H, buf.n_in
    buf.W, Ws = fused_weights(params)                   # backward() reads buf.W
    half = np.array(0.5, Ws.dtype)                       # a 0-d array: cheaper per call than a Python float
    p_o_half = np.repeat(0.5 * params["p_o"][:, None], buf.B, axis=1) if peep else None  # pre-broadcast: faster
    buf.S[:-1, :n_in] = x.transpose(0, 2, 1)
    tmp = buf.tmp
    # In both time loops every call writes into a preallocated array, passed positionally (ufunc(a, b, out)).
    for s, z, z_sq, z_if, i, f, g, o, c_prev, c, tc, h in buf.fwd:
        np.dot(Ws, s, z)                    # z (i f o halved); i, f already include p ⊙ c_{t-1}
        np.tanh(z_sq, z_sq)                 # i, f: tanh(z/2); g = tanh(z_g); vanilla: o too
        np.multiply(z_if, half, z_if)
        np.add(z_if, half, z_if)            # i, f = (1 + tanh(z/2)) / 2 = σ(z)
        np.multiply(f, c_prev, c)
        np.multiply(i, g, tmp)
        np.add(c, tmp, c)                   # c_t = f c_{t-1} + i g
        if peep:
            np.multiply(p_o_half, c, tmp)
            np.add(o, tmp, o)
            np.tanh(o, o)
        np.multiply(o, half, o)
        np.add(o, half, o)                  # o = σ(z_o + p_o c_t)
        np.tanh(c, tc)
        np.multiply(o, tc, h)               # h_t = o tanh(c_t)
    h_all = buf.S[1:, n_in:n_in + H]
    return np.einsum("h,thb->tb", params["Wy"], h_all) + params["by"][0]


def backward(params, buf, dpred):
    """BPTT through the cache forward() left in buf. dpred: (T, B) dLoss/dpred. Returns grads keyed like params.

    Per step, mirroring the forward (dh, dc: total gradient reaching h_t, c_t):
        dz_o = dh ⊙ tanh(c_t) ⊙ o(1-o)
        dc   = dc_{from t+1} + dh ⊙ o ⊙ (1 - tanh²c_t) + p_o ⊙ dz_o
        dz_i = dc ⊙ g ⊙ i(1-i),  dz_f = dc ⊙ c_{t-1} ⊙ f(1-f),  dz_g = dc ⊙ i ⊙ (1-g²)
        dh_{t-1} = dz Wh^T (+ dpred_{t-1} Wy),  dc_{t-1} = f ⊙ dc + p_i ⊙ dz_i + p_f ⊙ dz_f
    Every factor that does not depend on dh or dc is computed for all steps before the loop, and the weight
    gradients after it as one contraction over all steps."""
    peep, H, n_in, W = buf.peep, buf.H, buf.n_in, buf.W
    G, tc, c_prev = buf.G, buf.TC, buf.C[:-1]
    i, g, o = G[:, :H], G[:, 2 * H:3 * H], G[:, 3 * H:]        # f enters through the i-and-f block below
    Ko, Kc, K3 = buf.Ko, buf.Kc, buf.K3                      # written in place: no temporaries of size T
    np.subtract(1, o, out=Ko)
    Ko *= o
    Ko *= tc                                                  # Ko = tanh(c_t) o (1-o):  dz_o = dh Ko
    np.multiply(tc, tc, out=Kc)
    np.subtract(1, Kc, out=Kc)
    Kc *= o                                                   # Kc = o (1 - tanh²c_t) (+ p_o Ko):  dc += dh Kc
    if peep:
        np.multiply(params["p_o"][:, None], Ko, out=buf.scratch)
        Kc += buf.scratch
    k_if, k_i, k_f, k_g = K3[:, :2], K3[:, 0], K3[:, 1], K3[:, 2]   # dz_ifg = K3 dc
    s_if = G[:, :2 * H].reshape(buf.T, 2, H, buf.B)          # i and f as one block
    np.subtract(1, s_if, out=k_if)
    k_if *= s_if
    k_i *= g                                                  # g i (1-i)
    k_f *= c_prev                                             # c_{t-1} f (1-f)
    np.multiply(g, g, out=k_g)
    np.subtract(1, k_g, out=k_g)
    k_g *= i                                                  # i (1-g²)
    nh = 2 * H if peep else H
    WT = np.zeros((nh, 4 * H + 1), W.dtype)        # dz_t and dpred_{t-1} -> dh_{t-1} (and peephole dc_{t-1})
    WT[:, :4 * H] = W[:, n_in:n_in + nh].T
    WT[:H, 4 * H] = params["Wy"]
    dZ, dc, dcn, dhc = buf.dZ, buf.dc, buf.dcn, buf.dhc
    dZ[1:, 4 * H] = dpred[:-1]
    dh, dc_peep = dhc[:H], dhc[H:]
    np.multiply(params["Wy"][:, None], dpred[-1], out=dh)    # dh_{T-1}: the readout alone
    dc_peep[...] = 0.0
    dcn[...] = 0.0
    for dz, dz_ifg, dz_o, f_t, Kc_t, Ko_t, K3_t in buf.bwd:    # t = T-1 .. 0; dh holds dh_t
        np.multiply(dh, Kc_t, dc)
        np.add(dc, dcn, dc)                                 # dc_t
        np.multiply(K3_t, dc, dz_ifg)                       # dz_i, dz_f, dz_g
        np.multiply(dh, Ko_t, dz_o)                         # dz_o
        np.dot(WT, dz, dhc)                                 # dh_{t-1} = dz_t Wh^T + dpred_{t-1} Wy; p_i dz_i + p_f dz_f
        np.multiply(f_t, dc, dcn)
        if peep:
            np.add(dcn, dc_peep, dcn)                       # dc_{t-1} from step t
    dZ = dZ[:, :4 * H]
    dW = np.matmul(dZ, buf.S[:-1].transpose(0, 2, 1), out=buf.dW_t).sum(axis=0)  # Σ_t dz_t s_t^T, (4H, n_s)
    grads = {"Wx": dW[:, :n_in].T.copy(), "Wh": dW[:, n_in:n_in + H].T.copy(), "b": dW[:, -1].copy()}
    if peep:
        P = dW[:, n_in + H:n_in + 2 * H]
        grads["p_i"] = np.diagonal(P[:H]).copy()
        grads["p_f"] = np.diagonal(P[H:2 * H]).copy()
        grads["p_o"] = np.einsum("thb,thb->h", dZ[:, 3 * H:], buf.C[1:])
    grads["Wy"] = np.einsum("thb,tb->h", buf.S[1:, n_in:n_in + H], dpred)
    grads["by"] = np.array([dpred.sum()], dpred.dtype)
    return {k: grads[k] for k in params}


def loss_and_grads(params, batch, buf=None):
    """Objective ½ Σ_t (pred - y)², averaged over the batch, and its gradient."""
    if buf is None:
        buf = buffers_for(params, batch.x)
    pred = forward(params, batch.x, buf)
    err = pred - batch.y
    B = err.shape[1]
    return 0.5 * float(np.sum(err * err)) / B, backward(params, buf, err / B), pred


# ----------------------------------------------------------------------------------------------------------------
# Optimizer
# ----------------------------------------------------------------------------------------------------------------

def flatten(params):
    """One flat vector holding every parameter, and params rebuilt as views into it: the optimizer updates the
    vector with a handful of calls, and the model sees the update."""
    theta = np.concatenate([p.ravel() for p in params.values()])
    views, k = {}, 0
    for name, p in params.items():
        views[name] = theta[k:k + p.size].reshape(p.shape)
        k += p.size
    return theta, views


def clip_global(g, max_norm):
    """Scale the flat gradient g in place so its L2 norm is at most max_norm. Returns the norm before clipping."""
    norm = math.sqrt(float(g @ g))
    if norm > max_norm:
        g *= max_norm / norm
    return norm


def adam_init(theta):
    return {"m": np.zeros_like(theta), "v": np.zeros_like(theta), "t": 0}


def adam_step(theta, g, state, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One bias-corrected Adam update of the flat vector theta, in place."""
    state["t"] += 1
    t, m, v = state["t"], state["m"], state["v"]
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    theta -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)


# ----------------------------------------------------------------------------------------------------------------
# Train and evaluate
# ----------------------------------------------------------------------------------------------------------------

class Diverged(RuntimeError):
    """A non-finite loss or gradient."""


EVAL_CHUNK = 256  # held-out sequences per forward pass: bounds the memory of inference


def test_set(cfg):
    return msd_batch(rng_for(STREAM_TEST, cfg.test_seed), cfg.n_test, cfg.T, cfg.D_min, cfg.D_max, cfg.dtype)


def predict(params, x, chunk=EVAL_CHUNK):
    """pred (T, N) for x (T, N, n_in), in chunks of sequences, without keeping a cache for backward()."""
    T, N, n_in = x.shape
    H, peep, dtype = params["Wh"].shape[0], is_peep(params), params["Wh"].dtype
    bufs = {}
    out = []
    for k in range(0, N, chunk):
        xk = x[:, k:k + chunk]
        B = xk.shape[1]
        if B not in bufs:
            bufs[B] = make_buffers(T, B, H, peep, n_in, dtype, grad=False)
        out.append(forward(params, xk, bufs[B]))
    return np.concatenate(out, axis=1)


def evaluate(params, test):
    return score(predict(params, test.x), test)


def lr_at(cfg, it):
    """Learning rate for iteration it (1-based): lr * factor^floor((it-1) / every)."""
    return cfg.lr * cfg.lr_decay_factor ** ((it - 1) // cfg.lr_decay_every)


def train(cfg, seed, test=None, on_eval=None, log=None):
    """Train one model. Init and training batches come from generators derived from seed alone.

    on_eval(record, params) is called after every evaluation (iteration 0, every cfg.eval_every, the last);
    log(str) receives the progress lines. Returns (params, history, final); raises Diverged."""
    test = test_set(cfg) if test is None else test
    theta, params = flatten(init_params(rng_for(STREAM_INIT, seed), cfg.hidden, cfg.peep, 1, cfg.forget_bias,
                                        cfg.dtype))
    data = rng_for(STREAM_TRAIN, seed)
    opt = adam_init(theta)
    buf = make_buffers(cfg.T, cfg.batch, cfg.hidden, cfg.peep, 1, cfg.dtype)
    history = []
    t0 = time.perf_counter()
    train_mse = None  # no training batch seen yet

    def record(it):
        r = {"iter": it, "seen": it * cfg.batch, "train_mse": train_mse, **evaluate(params, test),
             "elapsed": time.perf_counter() - t0}
        history.append(r)
        if log:
            eta = r["elapsed"] / it * (cfg.iters - it) if it else 0.0
            tr = f"{train_mse:.5f}" if train_mse is not None else "   -   "
            log(f"seed {seed} it {it:5d}  seen {r['seen']:7d}  train mse {tr}  test mse {r['mse']:.5f}"
                f"  solved {r['solved']:.3f}  within1 {r['within1']:.3f}  {r['elapsed']:6.1f}s  eta {eta:5.1f}s")
        if on_eval:
            on_eval(r, params)

    record(0)
    for it in range(1, cfg.iters + 1):
        batch = msd_batch(data, cfg.batch, cfg.T, cfg.D_min, cfg.D_max, cfg.dtype)
        loss, grads, pred = loss_and_grads(params, batch, buf)
        g = np.concatenate([grads[k].ravel() for k in params])
        norm = clip_global(g, cfg.clip)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise Diverged(f"seed {seed}: non-finite {'loss' if not math.isfinite(loss) else 'gradient'} "
                           f"at iteration {it}")
        adam_step(theta, g, opt, lr_at(cfg, it))
        train_mse = 2 * loss / cfg.T  # the batch's MSE per step, comparable with the test MSE
        if it % cfg.eval_every == 0 or it == cfg.iters:
            record(it)
    final = {k: history[-1][k] for k in ("mse", "solved", "within1")}
    return params, history, final


# ----------------------------------------------------------------------------------------------------------------
# Gradient check
# ----------------------------------------------------------------------------------------------------------------

GRADCHECK_TOL = 1e-6


def gradcheck(peep, seed=0, T=12, H=4, B=3, D_min=2, D_max=4, eps=1e-3):
    """Max relative error |a - n| / max(|a| + |n|, 1e-8) between backward() (a) and a five-point central
    difference (n, truncation error O(eps^4)) of every entry of every parameter, in float64. Returns {name: error}."""
    params = init_params(rng_for(STREAM_INIT, seed), H, peep)
    for k in PEEPHOLES:  # larger peepholes, so their gradient paths carry weight well above round-off
        if k in params:
            params[k] *= 5
    batch = msd_batch(rng_for(STREAM_TRAIN, seed), B, T, D_min, D_max)
    buf = buffers_for(params, batch.x)
    _, grads, _ = loss_and_grads(params, batch, buf)

    def loss():
        err = forward(params, batch.x, buf) - batch.y
        return 0.5 * float(np.sum(err * err)) / B

    errors = {}
    for k, p in params.items():
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            f = []
            for d in (-2, -1, 1, 2):
                p[idx] = old + d * eps
                f.append(loss())
            p[idx] = old
            num[idx] = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * eps)
        errors[k] = float(np.max(np.abs(grads[k] - num) / np.maximum(np.abs(grads[k]) + np.abs(num), 1e-8)))
    return errors


# ----------------------------------------------------------------------------------------------------------------
# Runs: one model, many seeds, files
# ----------------------------------------------------------------------------------------------------------------

def variant_name(peep):
    return "peephole" if peep else "vanilla"


def run_one(cfg, seed, log=None, on_eval=None):
    """Train one model; returns a run record and the trained parameters."""
    t0 = time.perf_counter()
    params, history, final = train(cfg, seed, log=log, on_eval=on_eval)
    run = {"seed": seed, "variant": variant_name(cfg.peep), "final": final, "seen": cfg.iters * cfg.batch,
           "wall_time": time.perf_counter() - t0, "history": history}
    return run, params


def _job(cfg, seed):
    """A worker's task: (run, params) or, for a diverged model, its one-line message."""
    try:
        return run_one(cfg, seed)
    except Diverged as e:
        return str(e)


def run_many(cfgs_seeds, workers, log=print):
    """Train each (cfg, seed) in a pool of `workers` processes (in this process if workers == 1), logging a line
    as each finishes. Returns [(run, params)] in the input order; raises Diverged naming the first failed model."""
    results = [None] * len(cfgs_seeds)
    t0 = time.perf_counter()

    def done(k, res, n_done):
        if isinstance(res, str):
            raise Diverged(res)
        results[k] = res
        run = res[0]
        el = time.perf_counter() - t0
        eta = el / n_done * (len(cfgs_seeds) - n_done)
        log(f"[{n_done}/{len(cfgs_seeds)}] seed {run['seed']} {run['variant']:8s}  test mse {run['final']['mse']:.5f}"
            f"  solved {run['final']['solved']:.3f}  within1 {run['final']['within1']:.3f}"
            f"  ({run['wall_time']:.1f}s)  elapsed {el:.1f}s  eta {eta:.1f}s")

    if workers == 1:
        for k, (cfg, seed) in enumerate(cfgs_seeds):
            done(k, _job(cfg, seed), k + 1)
        return results
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_job, cfg, seed): k for k, (cfg, seed) in enumerate(cfgs_seeds)}
        for n_done, fut in enumerate(as_completed(futures), 1):
            try:
                done(futures[fut], fut.result(), n_done)
            except Diverged:
                for other in futures:
                    other.cancel()
                raise
    return results


def parse_seeds(spec):
    """'0-6', '0,3,5', '2-4,9' -> sorted list of distinct ints; ValueError on anything else."""
    seeds = []
    for part in spec.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"malformed --seeds {spec!r}: use forms like 0-6, 0,3,5 or 2-4,9")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"malformed --seeds {spec!r}: range {part.strip()} runs backwards")
        seeds.extend(range(a, b + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"malformed --seeds {spec!r}: a seed is listed twice")
    return sorted(seeds)


def write_atomic(path, write):
    """write(fileobj) into a temporary file beside path, then rename it over path: never a half-written file."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path, obj):
    write_atomic(path, lambda fh: fh.write((json.dumps(obj, indent=1) + "\n").encode()))


def save_model(path, params, cfg, run):
    meta = {"config": asdict(cfg), "seed": run["seed"], "final": run["final"], "history": run["history"]}
    write_atomic(path, lambda fh: np.savez(fh, meta=json.dumps(meta), **params))


class BadModel(ValueError):
    """A --load-model file that is missing, unreadable or inconsistent."""


def load_model(path):
    """-> (params, meta) from a save_model() file; BadModel with a one-line reason otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise BadModel(f"--load-model {path}: no such file") from None
    except Exception as e:
        raise BadModel(f"--load-model {path}: not a saved model ({type(e).__name__})") from None
    try:
        meta = json.loads(str(data.pop("meta")))
    except (KeyError, ValueError):
        raise BadModel(f"--load-model {path}: no model metadata") from None
    peep = "p_i" in data
    names = [k for k in PARAM_NAMES if peep or k not in PEEPHOLES]
    missing = [k for k in names if k not in data]
    if missing:
        raise BadModel(f"--load-model {path}: missing arrays {', '.join(missing)}")
    H = data["Wh"].shape[0] if data["Wh"].ndim == 2 else -1
    n_in = data["Wx"].shape[0] if data["Wx"].ndim == 2 else -1
    want = {"Wx": (n_in, 4 * H), "Wh": (H, 4 * H), "b": (4 * H,), "p_i": (H,), "p_f": (H,), "p_o": (H,),
            "Wy": (H,), "by": (1,)}
    for k in names:
        if H < 1 or n_in != 1 or data[k].shape != want[k]:
            raise BadModel(f"--load-model {path}: {k} has shape {data[k].shape}, expected {want[k]} for H={H}")
        if not np.all(np.isfinite(data[k])):
            raise BadModel(f"--load-model {path}: {k} has non-finite entries")
    return {k: data[k] for k in names}, meta


def summary_table(runs):
    """Per-seed rows, then mean, median and std per variant, as aligned text."""
    lines = [f"{'variant':8s} {'seed':>6s} {'test mse':>9s} {'solved':>7s} {'within1':>7s}"]
    for r in runs:
        f = r["final"]
        lines.append(f"{r['variant']:8s} {r['seed']:6d} {f['mse']:9.5f} {f['solved']:7.3f} {f['within1']:7.3f}")
    for v in dict.fromkeys(r["variant"] for r in runs):
        m = np.array([[r["final"][k] for k in ("mse", "solved", "within1")] for r in runs if r["variant"] == v])
        for name, fn in (("mean", np.mean), ("median", np.median), ("std", np.std)):
            a = fn(m, axis=0)
            lines.append(f"{v:8s} {name:>6s} {a[0]:9.5f} {a[1]:7.3f} {a[2]:7.3f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Statistics and the sweep report
# ----------------------------------------------------------------------------------------------------------------

def wilcoxon_signed_rank(d):
    """Two-sided Wilcoxon signed-rank test of paired differences d. Zeros are dropped (Wilcoxon's method), tied
    |d| get their average rank. The p-value is exact (the null distribution of W+ by counting) when no |d| ties
    and n <= 50; otherwise from the normal approximation with the tie correction of the variance.
    Returns (W+, W-, n, p); p = 1.0 when every difference is zero."""
    d = np.asarray(d, np.float64)
    d = d[d != 0]
    n = d.size
    if n == 0:
        return 0.0, 0.0, 0, 1.0
    a = np.abs(d)
    order = np.argsort(a, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(1, n + 1)
    values, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    ranks = np.bincount(inverse, weights=ranks) [inverse] / counts[inverse]  # average rank of each tie group
    w_plus = float(ranks[d > 0].sum())
    w_minus = float(ranks[d < 0].sum())
    if counts.max() == 1 and n <= 50:
        top = n * (n + 1) // 2
        ways = np.zeros(top + 1)                    # ways[s]: subsets of {1..n} whose ranks sum to s
        ways[0] = 1
        for r in range(1, n + 1):
            ways[r:] = ways[r:] + ways[:-r].copy()
        cdf = np.cumsum(ways) / 2.0 ** n
        w = int(round(w_plus))
        p = 2 * min(cdf[w], 1 - (cdf[w - 1] if w > 0 else 0.0))
    else:
        mean = n * (n + 1) / 4
        var = n * (n + 1) * (2 * n + 1) / 24 - np.sum(counts ** 3 - counts) / 48
        p = math.erfc(abs(w_plus - mean) / math.sqrt(2 * var)) if var > 0 else 1.0
    return w_plus, w_minus, n, min(1.0, float(p))


def bootstrap_mean_ci(d, n_boot=10000, seed=0, level=0.95):
    """Percentile bootstrap interval for the mean of d, resampling with a fixed seed."""
    d = np.asarray(d, np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


class BadSweep(ValueError):
    """A --report file that is not a complete --both sweep."""


def load_sweep(path):
    """-> {seed: {"peephole": run, "vanilla": run}} and the sweep's config; BadSweep with a one-line reason."""
    try:
        with open(path) as fh:
            sweep = json.load(fh)
    except FileNotFoundError:
        raise BadSweep(f"--report {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise BadSweep(f"--report {path}: not JSON ({type(e).__name__})") from None
    runs = sweep.get("runs") if isinstance(sweep, dict) else None
    if not isinstance(runs, list) or not runs:
        raise BadSweep(f"--report {path}: no 'runs' list")
    pairs = {}
    for k, r in enumerate(runs):
        try:
            seed, variant, f = r["seed"], r["variant"], r["final"]
            ok = (isinstance(seed, int) and variant in ("peephole", "vanilla")
                  and all(math.isfinite(f[m]) for m in ("mse", "solved", "within1")))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise BadSweep(f"--report {path}: run {k} lacks a seed, a variant or finite final metrics")
        if variant in pairs.setdefault(seed, {}):
            raise BadSweep(f"--report {path}: seed {seed} {variant} appears twice")
        pairs[seed][variant] = r
    unpaired = [s for s, p in pairs.items() if len(p) != 2]
    if unpaired:
        raise BadSweep(f"--report {path}: seeds without both variants: {', '.join(map(str, sorted(unpaired)))}")
    return dict(sorted(pairs.items())), sweep.get("config", {})


def report(pairs, headline_seed=4):
    """The README's Markdown tables from load_sweep()'s pairs."""
    seeds = list(pairs)
    V = ("peephole", "vanilla")
    get = lambda v, m: np.array([pairs[s][v]["final"][m] for s in seeds])
    out = []
    hs = headline_seed if headline_seed in pairs else seeds[0]
    out += [f"Headline, seed {hs}:", "",
            "| variant | test MSE | exact solve | within one step | sequences seen | wall time (s) |",
            "|---|---:|---:|---:|---:|---:|"]
    for v in V:
        r = pairs[hs][v]
        out.append(f"| {v} | {r['final']['mse']:.5f} | {r['final']['solved']:.3f} | {r['final']['within1']:.3f} "
                   f"| {r.get('seen', 0):,} | {r.get('wall_time', float('nan')):.1f} |")
    out += ["", f"Per seed ({len(seeds)} seeds):", "",
            "| seed | peephole MSE | peephole exact | peephole ±1 | vanilla MSE | vanilla exact | vanilla ±1 |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for s in seeds:
        p, q = pairs[s]["peephole"]["final"], pairs[s]["vanilla"]["final"]
        out.append(f"| {s} | {p['mse']:.5f} | {p['solved']:.3f} | {p['within1']:.3f} "
                   f"| {q['mse']:.5f} | {q['solved']:.3f} | {q['within1']:.3f} |")
    out += ["", "Summary over seeds (exact solve rate; MSE):", "",
            "| variant | exact mean ± std | exact median | exact min | seeds ≥ 0.95 | seeds ≤ 0.6 "
            "| MSE mean ± std | MSE median |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    parts = [("", slice(None))] + ([(", first 7 seeds", slice(0, 7))] if len(seeds) > 7 else [])  # a small sweep
    for label, part in parts:
        for v in V:
            e, m = get(v, "solved")[part], get(v, "mse")[part]
            out.append(f"| {v}{label} | {e.mean():.3f} ± {e.std(ddof=1) if e.size > 1 else 0:.3f} "
                       f"| {np.median(e):.3f} | {e.min():.3f} | {int((e >= 0.95).sum())} / {e.size} "
                       f"| {int((e <= 0.6).sum())} / {e.size} "
                       f"| {m.mean():.5f} ± {m.std(ddof=1) if m.size > 1 else 0:.5f} | {np.median(m):.5f} |")
    out += ["", "Paired comparison, peephole − vanilla per seed (95% bootstrap CI of the mean: 10,000 resamples, "
            "seed 0; Wilcoxon signed-rank, two-sided):", "",
            "| metric | peephole better | ties | peephole worse | mean difference | 95% CI | Wilcoxon p |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for m, name, sign in (("solved", "exact solve rate", 1), ("within1", "within-one rate", 1),
                          ("mse", "test MSE", -1)):
        d = get("peephole", m) - get("vanilla", m)
        lo, hi = bootstrap_mean_ci(d)
        p = wilcoxon_signed_rank(d)[3]
        fmt = ".5f" if m == "mse" else ".3f"
        out.append(f"| {name} | {int((sign * d > 0).sum())} | {int((d == 0).sum())} | {int((sign * d < 0).sum())} "
                   f"| {d.mean():+{fmt}} | [{lo:+{fmt}}, {hi:+{fmt}}] | {p:.2g} |")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------

def positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def finite_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def recipe_parser(description):
    """A parser with the task, model, training and evaluation flags (defaults: the headline recipe) and one-line
    errors with argparse's exit status 2. The figure scripts start from it too."""
    d = Config()
    ap = argparse.ArgumentParser(description=description)
    ap.error = lambda msg: ap.exit(2, f"{ap.prog}: error: {msg}\n")
    task = ap.add_argument_group("task")
    task.add_argument("--T", type=positive_int, default=d.T, help="sequence length")
    task.add_argument("--D-min", type=int, default=d.D_min, help="shortest spike gap D")
    task.add_argument("--D-max", type=int, default=d.D_max, help="longest spike gap D")
    model = ap.add_argument_group("model")
    model.add_argument("--hidden", type=positive_int, default=d.hidden, help="cells H")
    model.add_argument("--forget-bias", type=finite_float, default=d.forget_bias)
    model.add_argument("--dtype", choices=("float64", "float32"), default=d.dtype)
    tr = ap.add_argument_group("training")
    tr.add_argument("--batch", type=positive_int, default=d.batch)
    tr.add_argument("--iters", type=positive_int, default=d.iters)
    tr.add_argument("--lr", type=finite_float, default=d.lr)
    tr.add_argument("--lr-decay-factor", type=finite_float, default=d.lr_decay_factor)
    tr.add_argument("--lr-decay-every", type=positive_int, default=d.lr_decay_every)
    tr.add_argument("--clip", type=finite_float, default=d.clip, help="global L2 gradient norm bound")
    ev = ap.add_argument_group("evaluation")
    ev.add_argument("--n-test", type=positive_int, default=d.n_test, help="held-out sequences")
    ev.add_argument("--test-seed", type=int, default=d.test_seed)
    ev.add_argument("--eval-every", type=positive_int, default=d.eval_every)
    return ap


def build_parser():
    ap = recipe_parser("LSTM with and without peephole connections on the MSD timing task.")
    v = ap.add_argument_group("variant").add_mutually_exclusive_group()
    v.add_argument("--peep", dest="variant", action="store_const", const="peep", help="peephole LSTM (default)")
    v.add_argument("--no-peep", dest="variant", action="store_const", const="vanilla", help="LSTM without peepholes")
    v.add_argument("--both", dest="variant", action="store_const", const="both", help="both, paired per seed")
    seeds = ap.add_argument_group("seeds")
    s = seeds.add_mutually_exclusive_group()
    s.add_argument("--seed", type=int, default=4, help="one model's seed (default 4)")
    s.add_argument("--seeds", help="many seeds: 0-6, 0,3,5 or 2-4,9")
    seeds.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes for many models")
    io = ap.add_argument_group("files and modes")
    io.add_argument("--out", help="write arguments, histories and final metrics as JSON")
    io.add_argument("--save-model", help="write the trained parameters and config (.npz); one model only")
    io.add_argument("--load-model", help="a --save-model file to re-score (with --eval-only)")
    io.add_argument("--eval-only", action="store_true", help="score --load-model on the held-out set")
    io.add_argument("--gradcheck", action="store_true", help="check backward() against finite differences")
    io.add_argument("--report", metavar="SWEEP_JSON", help="print the README's Markdown tables from a --both sweep")
    io.add_argument("--quiet", action="store_true", help="no per-evaluation progress lines")
    return ap


def config_from_args(a, peep):
    """The Config of parsed recipe flags (argparse's dest names are the Config's field names)."""
    return Config(**{f.name: getattr(a, f.name) for f in fields(Config) if f.name != "peep"}, peep=peep)


def check_recipe(a):
    """Checks of the recipe flags that argparse cannot do: the first problem as one line, or None."""
    problems = check_task(a.T, a.D_min, a.D_max)
    if a.lr <= 0:
        problems.append(f"--lr must be > 0 (got {a.lr})")
    if a.clip <= 0:
        problems.append(f"--clip must be > 0 (got {a.clip})")
    if not 0 < a.lr_decay_factor <= 1:
        problems.append(f"--lr-decay-factor must be in (0, 1] (got {a.lr_decay_factor})")
    return problems[0] if problems else None


def check_args(a):
    """check_recipe() and the cross-flag checks of this command."""
    if a.eval_only != bool(a.load_model):
        return "--eval-only and --load-model go together"
    if a.save_model and (a.seeds or a.variant == "both"):
        return "--save-model takes one model: drop --seeds and --both"
    return check_recipe(a)


def versions():
    return {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "cores": os.cpu_count()}


def final_line(run):
    f = run["final"]
    return (f"final seed {run['seed']} {run['variant']}: test mse {f['mse']:.5f}  solved {f['solved']:.3f}"
            f"  within1 {f['within1']:.3f}")


def main(argv=None):
    ap = build_parser()
    a = ap.parse_args(argv)
    problem = check_args(a)
    if a.seeds:
        try:
            seeds = parse_seeds(a.seeds)
        except ValueError as e:
            problem = problem or str(e)
    else:
        seeds = [a.seed]
    if problem:
        ap.error(problem)

    if a.gradcheck:
        worst = 0.0
        for peep in (True, False):
            errs = gradcheck(peep)
            worst = max(worst, *errs.values())
            print(f"gradcheck {variant_name(peep):8s} " + "  ".join(f"{k} {e:.1e}" for k, e in errs.items()))
        ok = worst <= GRADCHECK_TOL
        print(f"gradcheck {'passed' if ok else 'FAILED'}: max relative error {worst:.1e} (tolerance {GRADCHECK_TOL:.0e})")
        return 0 if ok else 1

    if a.report:
        try:
            pairs, _ = load_sweep(a.report)
        except BadSweep as e:
            ap.error(str(e))
        print(report(pairs))
        return 0

    if a.eval_only:
        try:
            params, meta = load_model(a.load_model)
        except BadModel as e:
            ap.error(str(e))
        cfg = replace(config_from_args(a, is_peep(params)), hidden=params["Wh"].shape[0],
                      dtype=str(params["Wh"].dtype))
        print(f"re-scoring {a.load_model} ({variant_name(cfg.peep)}, H={cfg.hidden}, trained as seed "
              f"{meta.get('seed')}) on {cfg.n_test} held-out sequences, T={cfg.T}, D in [{cfg.D_min}, {cfg.D_max}]")
        run = {"seed": meta.get("seed"), "variant": variant_name(cfg.peep), "final": evaluate(params, test_set(cfg))}
        print(final_line(run))
        return 0

    variants = {"peep": [True], "vanilla": [False], "both": [True, False], None: [True]}[a.variant]
    jobs = [(config_from_args(a, peep), seed) for seed in seeds for peep in variants]
    cfg0 = jobs[0][0]
    print(f"MSD: T={cfg0.T} D in [{cfg0.D_min}, {cfg0.D_max}]  H={cfg0.hidden} batch={cfg0.batch} "
          f"iters={cfg0.iters} lr={cfg0.lr} (x{cfg0.lr_decay_factor} every {cfg0.lr_decay_every}) clip={cfg0.clip} "
          f"{cfg0.dtype}  test: {cfg0.n_test} seqs, seed {cfg0.test_seed}")
    print(f"models: {', '.join(variant_name(p) for p in variants)} x seeds {a.seeds or a.seed}"
          + (f" on {min(a.workers, len(jobs))} workers" if len(jobs) > 1 else ""))
    t0 = time.perf_counter()
    try:
        if len(jobs) == 1:
            run, params = run_one(cfg0, seeds[0], log=None if a.quiet else print)
            results = [(run, params)]
        else:
            results = run_many(jobs, min(a.workers, len(jobs)))
    except Diverged as e:
        print(f"error: {e}; no output written", file=sys.stderr)
        return 1
    runs = [r for r, _ in results]
    print(final_line(runs[0]) if len(runs) == 1 else summary_table(runs))
    wall = time.perf_counter() - t0
    print(f"wall time {wall:.1f}s")
    if a.save_model:
        save_model(a.save_model, results[0][1], cfg0, runs[0])
        print(f"wrote {a.save_model}")
    if a.out:
        args = {k: v for k, v in vars(a).items()}
        write_json(a.out, {"args": args, "config": asdict(cfg0), "runs": runs, "wall_time": wall, **versions()})
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
