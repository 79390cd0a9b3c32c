"""LSTM with and without peephole connections on precise-timing tasks, in NumPy.

Reproduction of Gers, Schraudolph & Schmidhuber, "Learning Precise Timing with LSTM Recurrent Networks",
JMLR 3:115-143 (2002). Read top to bottom: tasks -> cells (forward, backward) -> optimizer -> train/evaluate ->
online learning (the paper's own: --learner rtrl) -> gradcheck -> runs, sweeps and report -> CLI.

Tasks (TASKS: generator, scorer, defaults per task; "units" are what a task counts: intervals, spikes, periods).
  msd     the seed's MSD (the default): a sequence of length T has one input channel, 0 except 1.0 at t1 and
          t2 = t1 + D, D uniform in [D_min, D_max], t1 uniform in [0, T-1-2D]; the target is 0 except 1.0 at
          t1 + 2D. Solved when argmax(pred[t2+1:T]) lands exactly on t1 + 2D. Not the paper's MSD.
  delays  the paper's MSD (a continual stream) and, trained with --window 1, its NMSD: interval k lasts F + I_k
          steps, I_k drawn uniformly from a set I, and ends with an input spike; the target is I_k at that spike
          and 0 elsewhere.
  gts     the paper's GTS: no input; the target is 1.0 at t = F-1, 2F-1, ... and 0 elsewhere.
  pfg     the paper's PFG: no input; the target is f_cos, f_tri or f_rect of period F.
Stream tasks are scored by the paper's criterion: a step is wrong when |pred - y| >= tol (0.49 spikes and delays,
0.3 PFG), and a free run from the zero state over test_units units is error-free up to its first wrong step.

Network. One LSTM layer of H cells (the paper's network: H one-cell blocks), gates i f g o in one fused
pre-activation, a scalar output unit that sees h_t and a bias:

    z   = x_t Wx + h_{t-1} Wh + b                      Wx: n_in x nH, Wh: H x nH, b: nH  (n = 4 gates, 3 without f)
    i   = σ(z_i + p_i ⊙ c_{t-1})                       p_i p_f p_o: peephole weights, one per cell
    f   = σ(z_f + p_f ⊙ c_{t-1})                       absent in the 1997 cell: f = 1
    g   = tanh(z_g)                                    the paper's network: g = z_g
    c_t = f ⊙ c_{t-1} + i ⊙ g
    o   = σ(z_o + p_o ⊙ c_t)
    h_t = o ⊙ tanh(c_t)                                the paper's network: h_t = o ⊙ c_t
    pred_t = h_t Wy + by                               Wy: H, by: 1; the paper's spike tasks: σ(h_t Wy + by)

A cell without peepholes has no p_i, p_f, p_o. Loss: ½ Σ_t (pred_t - y_t)², averaged over the batch. (h_{-1}, c_{-1})
is the initial state: zero unless a caller carries one in; it is a constant of the window (no gradient).

Speed. One step's arithmetic for the batch costs less than one NumPy call, so the code counts calls. Internally
everything is feature-major, (features, B) per step, so each gate block is a contiguous chunk. The stacked state
s_t = [x_t; h_{t-1}; c_{t-1}; 1] meets one fused matrix W = [Wx^T  Wh^T  P  b] in one np.dot per step, where
P = [diag(p_i); diag(p_f); 0; 0] carries the input- and forget-gate peepholes (no peepholes: no c rows, no P). The
sigmoid is σ(a) = (1 + tanh(a/2)) / 2 with the halving folded into the weights, so one tanh covers i, f and g. The
cell's switches (Net) are resolved once per call into the buffers' per-step views and a few local flags.
"""
import os

# Every matrix here is tiny: BLAS threads only add overhead, and one thread per process keeps results bit-identical
# between a model trained alone and one trained in a --workers pool. Takes effect only if NumPy is not loaded yet.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import hashlib
import importlib
import importlib.util
import itertools
import json
import math
import platform
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
import multiprocessing
from typing import Callable, NamedTuple

import numpy as np

PARAM_NAMES = ("Wx", "Wh", "b", "p_i", "p_f", "p_o", "Wy", "by")
PEEPHOLES = ("p_i", "p_f", "p_o")

# Each random stream has its own generator, derived from one seed and a stream number.
STREAM_INIT, STREAM_TRAIN, STREAM_TEST, STREAM_PERTURB = 0, 1, 2, 3


def rng_for(stream, seed):
    return np.random.default_rng([stream, seed])


# ----------------------------------------------------------------------------------------------------------------
# Tasks
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Batch:
    """The seed's MSD: B sequences of length T. x: (T, B, 1) input spikes, y: (T, B) target; t1, t2, t_target: (B,)."""
    x: np.ndarray
    y: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    t_target: np.ndarray


@dataclass
class Stream:
    """B streams of L steps from their start. x: (L, B, 1) input, y: (L, B) target, ends: (L, B) True on the last
    step of each unit (interval, spike period or wave period)."""
    x: np.ndarray
    y: np.ndarray
    ends: np.ndarray


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


def delay_stream(rng, n, L, F, I, dtype="float64"):
    """n spike-delay streams of L steps: interval k lasts F + I_k steps (I_k uniform over the set I) and ends with
    an input spike, at step T_k - 1 with T_k = Σ_{j<=k} (F + I_j); the target there is I_k, elsewhere 0."""
    m = L // F + 1                                         # intervals enough to fill L steps
    I_k = np.asarray(I)[rng.integers(0, len(I), size=(n, m))]
    t = np.cumsum(F + I_k, axis=1) - 1
    keep = t < L
    b = np.broadcast_to(np.arange(n)[:, None], t.shape)[keep]
    t = t[keep]
    x = np.zeros((L, n, 1), dtype)
    y = np.zeros((L, n), dtype)
    ends = np.zeros((L, n), bool)
    x[t, b, 0] = 1.0
    y[t, b] = I_k[keep]
    ends[t, b] = True
    return Stream(x, y, ends)


def gts_stream(L, F, dtype="float64"):
    """GTS: no input; target 1.0 at t = F-1, 2F-1, ... (a spike every F steps), 0 elsewhere. One stream."""
    ends = (np.arange(L) % F == F - 1)[:, None]
    return Stream(np.zeros((L, 1, 1), dtype), ends.astype(dtype), ends)


WAVES = {  # u = (t mod F) / F, the phase in [0, 1)
    "cos": lambda u: (1 - np.cos(2 * np.pi * u)) / 2,
    "tri": lambda u: np.where(u <= 0.5, 2 * u, 2 - 2 * u),
    "rect": lambda u: (u > 0.5).astype(np.float64),
}


def pfg_stream(L, F, wave="cos", dtype="float64"):
    """PFG: no input; target f_wave((t mod F) / F), the ends of the periods at t = F-1, 2F-1, ... One stream."""
    t = np.arange(L)
    ends = (t % F == F - 1)[:, None]
    return Stream(np.zeros((L, 1, 1), dtype), WAVES[wave]((t % F) / F)[:, None].astype(dtype), ends)


def check_task(T, D_min, D_max):
    """The seed's MSD constraints, as one-line messages (empty list: valid)."""
    errors = []
    if D_min < 1:
        errors.append(f"--D-min must be >= 1 (got {D_min})")
    if D_min > D_max:
        errors.append(f"--D-min ({D_min}) must not exceed --D-max ({D_max})")
    if T < 2 * D_max + 1:
        errors.append(f"--T must be >= 2*D_max + 1 = {2 * D_max + 1} so the target fits (got {T})")
    return errors


def score(pred, batch):
    """The seed's MSD: MSE over all steps and sequences; exact and within-one solve rates of argmax(pred[t2+1:T])."""
    pred = np.asarray(pred, np.float64)
    T = pred.shape[0]
    after_t2 = np.arange(T)[:, None] > batch.t2[None, :]
    peak = np.argmax(np.where(after_t2, pred, -np.inf), axis=0)  # ties: the first maximum
    miss = peak - batch.t_target
    return {"mse": float(np.mean((pred - batch.y) ** 2)),
            "solved": float(np.mean(miss == 0)),
            "within1": float(np.mean(np.abs(miss) <= 1))}


def first_errors(pred, s, tol):
    """Per stream: the first step with |pred - y| >= tol (L if none) and the units completed before it."""
    wrong = np.abs(pred - s.y) >= tol
    L = wrong.shape[0]
    first = np.where(wrong.any(axis=0), np.argmax(wrong, axis=0), L)
    units = np.sum(s.ends & (np.arange(L)[:, None] < first[None, :]), axis=0)
    return first, units


def measured_period(pred, mid=0.5, low=0.25):
    """Mean period of a generated wave or spike train: the time between upward crossings of `mid` (interpolated
    between steps), counting a crossing only after pred has come down to `low` since the last one counted.
    None with fewer than two such crossings."""
    k = np.flatnonzero((pred[:-1] < mid) & (pred[1:] >= mid))
    lows = np.flatnonzero(pred <= low)
    times, last = [], -1
    for j in k:
        n = np.searchsorted(lows, last, side="right")
        if n < lows.size and lows[n] <= j:
            times.append(j + (mid - pred[j]) / (pred[j + 1] - pred[j]))
            last = j
    if len(times) < 2:
        return None
    return float((times[-1] - times[0]) / (len(times) - 1))


def stream_score(pred, s, tol, need, periodic):
    """The paper's criterion on one free-running stream: pred (L,) against s (B = 1). run_units / run_steps: the
    error-free run from the start; success: at least `need` units error-free; rmse over the whole run; for the
    generation tasks the measured period of the output."""
    first, units = first_errors(pred[:, None], s, tol)
    with np.errstate(over="ignore", invalid="ignore"):            # a diverging free run's rmse is inf or nan
        rmse = float(np.sqrt(np.mean((pred - s.y[:, 0]) ** 2)))
    m = {"run_units": int(units[0]), "run_steps": int(first[0]), "success": bool(units[0] >= need), "rmse": rmse}
    if periodic:
        m["period"] = measured_period(pred)
    return m


@dataclass(frozen=True)
class Task:
    """One row of TASKS. paper: the paper's name. make(cfg, rng, B, units): a training batch. test(cfg, units): the
    held-out data. tol: the criterion (None: the seed's argmax scoring). out: the paper network's output unit.
    long: final and best models are re-scored over long x test_units units. defaults: the task's recipe; one_cell:
    what the paper's one-cell network (--arch paper) trains with by BPTT instead (the claims grid's recipe)."""
    paper: str
    make: Callable
    test: Callable
    tol: float = None
    out: Callable = None
    periodic: bool = False
    long: int = 1
    defaults: dict = field(default_factory=dict)
    one_cell: dict = field(default_factory=dict)


def unit_len(cfg):
    """Steps in the longest unit of a stream task."""
    return cfg.F + (max(cfg.I) if cfg.task == "delays" else 0)


def stream_test(cfg, units):
    """The held-out stream: `units` whole units from the start, one stream (a delay stream from the test seed)."""
    if cfg.task == "delays":
        s = delay_stream(rng_for(STREAM_TEST, cfg.test_seed), 1, units * unit_len(cfg), cfg.F, cfg.I, cfg.dtype)
        L = int(np.flatnonzero(s.ends[:, 0])[units - 1]) + 1
        return Stream(s.x[:L], s.y[:L], s.ends[:L])
    return TASKS[cfg.task].make(cfg, None, 1, units)


SHARED = {"iters": 3000, "lr": 5e-3, "lr_decay_factor": 0.5, "lr_decay_every": 1500, "clip": 1.0,
          "eval_every": 100, "test_seed": 1234}
ONE_CELL = {"lr": 0.01, "iters": 6000, "eval_every": 250}   # with the paper's init: what taught it f_cos (probes)
TASKS = {
    "msd": Task("- (the seed's own variant)",
                lambda cfg, rng, B, units: msd_batch(rng, B, cfg.T, cfg.D_min, cfg.D_max, cfg.dtype),
                lambda cfg, units: msd_batch(rng_for(STREAM_TEST, cfg.test_seed), cfg.n_test, cfg.T, cfg.D_min,
                                             cfg.D_max, cfg.dtype),
                out=lambda cfg: "sigmoid",
                defaults={**SHARED, "T": 150, "D_min": 30, "D_max": 60, "batch": 32, "n_test": 512}),
    "delays": Task("MSD (continual stream); NMSD with --window 1",
                   lambda cfg, rng, B, units: delay_stream(rng, B, units * unit_len(cfg), cfg.F, cfg.I, cfg.dtype),
                   stream_test, tol=0.49,
                   out=lambda cfg: "sigmoid" if max(cfg.I) <= 1 else "linear",
                   defaults={**SHARED, "F": 10, "I": (0, 1), "window": (10, 10), "batch": 16, "test_units": 1000},
                   one_cell=ONE_CELL),
    "gts": Task("GTS",
                lambda cfg, rng, B, units: gts_stream(units * cfg.F, cfg.F, cfg.dtype),
                stream_test, tol=0.49, out=lambda cfg: "sigmoid", periodic=True,
                defaults={**SHARED, "F": 10, "window": (10, 200), "batch": 1, "test_units": 1000},
                one_cell={**ONE_CELL, "window": (3, 3)}),
    "pfg": Task("PFG",
                lambda cfg, rng, B, units: pfg_stream(units * cfg.F, cfg.F, cfg.wave, cfg.dtype),
                stream_test, tol=0.3, out=lambda cfg: "linear", periodic=True, long=10,
                defaults={**SHARED, "F": 10, "wave": "cos", "window": (10, 200), "batch": 1, "test_units": 1000},
                one_cell={**ONE_CELL, "window": (3, 3)}),
}
GENERATION = ("gts", "pfg")  # no input: B identical streams would be one stream repeated, so B = 1
SELF_PACE = 1.5  # a self-paced window is this many times the last window's error-free run, within --window MIN-MAX


@dataclass(frozen=True)
class Config:
    """The recipe. Fields left None take the task's defaults (TASKS; for the one-cell network, --arch paper, its
    one_cell recipe and the paper's initialisation), then the architecture's and initialisation's: Config() is the
    headline experiment, Config(task="gts", arch="paper") the paper's network on GTS. The defaults
    are filled in once, at construction: replace(cfg, task=...) keeps the old task's, so build a new Config instead."""
    task: str = "msd"
    T: int = None
    D_min: int = None
    D_max: int = None
    F: int = None
    I: tuple = None
    wave: str = None
    window: tuple = None       # training window in units: (n, n) fixed, (min, max) self-paced
    test_units: int = None
    arch: str = "seed"         # "seed": tanh cell input and output, linear output unit; "paper": see net_of()
    init: str = None           # the architecture's: "seed" or "paper"
    hidden: int = None         # seed arch: 8 cells; paper arch: 1
    batch: int = None
    iters: int = None
    lr: float = None
    lr_decay_factor: float = None
    lr_decay_every: int = None
    clip: float = None
    forget_bias: float = None  # seed init: 1.0; paper init: -2.0; no forget gate: None
    n_test: int = None
    test_seed: int = None
    eval_every: int = None
    peep_scale: float = 0.1    # the peepholes' initial scale; 0 starts them at zero
    init_noise: float = 0.0    # N(0, init_noise²) added to every initial weight, from its own stream
    peep: bool = True
    forget: bool = True
    dtype: str = "float64"
    learner: str = "bptt"      # "bptt": BPTT + Adam on windows; "rtrl": the paper's online learning (Online)
    momentum: float = None     # rtrl: the paper's per task (RTRL_MOMENTUM)
    max_streams: int = None    # rtrl: training streams per model (the paper's 10^7)
    max_steps: int = None      # rtrl: training time steps per model
    protocol: str = None       # rtrl: "paper" (a test only after a training success) or "every-stream" (PROTOCOLS)

    def __post_init__(self):
        if self.init is None:
            object.__setattr__(self, "init", self.arch)
        one_cell = TASKS[self.task].one_cell if self.arch == "paper" else {}
        fill = {**TASKS[self.task].defaults, **one_cell, "hidden": 8 if self.arch == "seed" else 1,
                "forget_bias": (1.0 if self.init == "seed" else -2.0) if self.forget else None}
        if self.learner == "rtrl":                # BPTT's fields stay None: the online learner has no windows
            fill = {k: v for k, v in fill.items() if k not in BPTT_ONLY}
            fill.update(RTRL_DEFAULTS, batch=1, momentum=RTRL_MOMENTUM["nmsd" if nmsd(self) else self.task])
        for k, v in fill.items():
            if getattr(self, k) is None:
                object.__setattr__(self, k, v)


BPTT_ONLY = ("iters", "lr_decay_factor", "lr_decay_every", "clip", "eval_every", "window", "batch")
RTRL_ONLY = ("momentum", "max_streams", "max_steps", "protocol")


def config_dict(cfg):
    """The Config as a dict for journals and job keys; a BPTT job's leaves out the online learner's fields, so its
    key is the one it had before they existed."""
    d = asdict(cfg)
    if cfg.learner == "bptt":
        for k in ("learner",) + RTRL_ONLY:
            del d[k]
    return d


# ----------------------------------------------------------------------------------------------------------------
# Cells: forward and backward
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Net:
    """What a forward pass computes beyond the parameters' shapes. squash: g = tanh(z_g) and h = o tanh(c) (the
    seed's); False: g = z_g and h = o c (the paper's). out: the output unit, "linear" or "sigmoid"."""
    peep: bool = True
    forget: bool = True
    squash: bool = True
    out: str = "linear"


def net_of(cfg):
    """The Net a Config trains: the seed's architecture keeps its linear output unit on every task."""
    paper = cfg.arch == "paper"
    return Net(cfg.peep, cfg.forget, not paper, TASKS[cfg.task].out(cfg) if paper else "linear")


def default_net(params):
    """The seed's architecture for params (peepholes and forget gate read off their shapes)."""
    return Net("p_i" in params, params["Wh"].shape[1] == 4 * params["Wh"].shape[0])


def cell_name(peep, forget=True):
    return {(True, True): "peephole", (False, True): "vanilla", (False, False): "lstm1997",
            (True, False): "peephole-nf"}[peep, forget]


def init_params(rng, H, peep=True, n_in=1, forget_bias=1.0, dtype="float64", forget=True, init="seed",
                peep_scale=0.1):
    """seed: Wx ~ N(0,1)*0.5, Wh ~ N(0,1)*0.5/sqrt(H), Wy ~ N(0,1)/sqrt(H), biases 0 but the forget gate's,
    p_* ~ N(0,1)*peep_scale. paper: everything uniform in [-0.1, 0.1] (peepholes in [-peep_scale, peep_scale]),
    then gate biases input 0, forget forget_bias, output +2. Peepholes are drawn last (also when peep_scale is 0)
    and a cell without a forget gate drops the f block of the same draw: at one seed every cell shares every
    weight it has with the others."""
    if init == "seed":
        p = {"Wx": rng.standard_normal((n_in, 4 * H)) * 0.5,
             "Wh": rng.standard_normal((H, 4 * H)) * 0.5 / math.sqrt(H),
             "b": np.zeros(4 * H),
             "Wy": rng.standard_normal(H) / math.sqrt(H),
             "by": np.zeros(1)}
        if forget:
            p["b"][H:2 * H] = forget_bias
        draw = lambda: rng.standard_normal(H) * peep_scale
    else:
        u = lambda *shape: rng.uniform(-0.1, 0.1, shape)
        p = {"Wx": u(n_in, 4 * H), "Wh": u(H, 4 * H), "b": u(4 * H), "Wy": u(H), "by": u(1)}
        p["b"][:H] = 0.0
        p["b"][3 * H:] = 2.0
        if forget:
            p["b"][H:2 * H] = forget_bias
        draw = lambda: u(H) * (peep_scale / 0.1)
    if peep:
        for k in PEEPHOLES:
            p[k] = draw()
    if not forget:
        keep = np.r_[0:H, 2 * H:4 * H]
        p["Wx"], p["Wh"], p["b"] = p["Wx"][:, keep], p["Wh"][:, keep], p["b"][keep]
        p.pop("p_f", None)
    return {k: p[k].astype(dtype) for k in PARAM_NAMES if k in p}


def initial_params(cfg, seed):
    """The initial parameters of cfg's model at seed: init_params() from the seed's init stream, then N(0,
    init_noise²) added to every weight from its own stream (in the order of init_params()'s keys)."""
    params = init_params(rng_for(STREAM_INIT, seed), cfg.hidden, cfg.peep, 1, cfg.forget_bias, cfg.dtype, cfg.forget,
                         cfg.init, cfg.peep_scale)
    if cfg.init_noise:
        flat = np.concatenate([p.ravel() for p in params.values()])
        flat += rng_for(STREAM_PERTURB, seed).standard_normal(flat.size) * cfg.init_noise
        k = 0
        for name, p in params.items():
            params[name] = flat[k:k + p.size].reshape(p.shape)
            k += p.size
    return params


def is_peep(params):
    return "p_i" in params


def fused_weights(params, net):
    """W (nH, n_s): s_t = [x_t; h_{t-1}; c_{t-1} (peephole only); 1] -> z. Returns W and W with the gate rows
    halved (the forward's tanh then yields σ via (1 + tanh(a/2)) / 2); the cell input's rows stay whole. With a
    leading model axis on every parameter, W has it too."""
    Wx, Wh, b = params["Wx"], params["Wh"], params["b"]
    H, nH = Wh.shape[-2:]
    blocks = [Wx.swapaxes(-1, -2), Wh.swapaxes(-1, -2)]
    if net.peep:
        P = np.zeros(Wh.shape[:-2] + (nH, H), Wh.dtype)
        P[..., np.arange(H), np.arange(H)] = params["p_i"]
        if net.forget:
            P[..., H + np.arange(H), np.arange(H)] = params["p_f"]
        blocks.append(P)
    W = np.concatenate(blocks + [b[..., None]], axis=-1)
    half = np.full((nH, 1), 0.5, W.dtype)
    n_sig = 2 * H if net.forget else H
    half[n_sig:n_sig + H] = 1.0
    return W, W * half


@dataclass
class Buffers:
    """Preallocated arrays for one (T, M, B, H, net) shape: M models of the same shape, each with B sequences; after
    forward() it is the cache backward() reads. A shorter sequence uses the first steps of every array.

    S: (T+1, M, n_s, B) stacked states, S[t] = [x_t; h_{t-1}; c_{t-1}; 1];  C: (T+1, M, H, B) cell states,
    C[t+1] = c_t (a view into S for the peephole cell; C[0] the initial state); G: (T, M, nH, B) gate values i (f) g o
    (pre-activations until squashed); TC: (T, M, H, B) tanh(c_t), or c_t itself when the cell does not squash;
    fwd: the per-step views the forward loop walks, built once (without the model axis when M = 1); W: the fused
    weights of the last forward().
    With grad=False (inference) G and TC hold one step that every step reuses, and the backward's arrays are absent:
    dZ: (T, M, nH+1, B) gradient of the pre-activations, with dpred_{t-1} in the last row; Ko, Kc (T, M, H, B),
    K3 (T, M, n-1, H, B): the backward's per-step factors; dc, dcn (M, H, B), dhc (M, H or 2H, B): its running
    gradients; dW_t (T, M, nH, n_s), scratch (T, M, H, B): room for products that would otherwise be allocated on
    every call; bwd: its per-step views, from t = T-1 down to 0."""
    T: int
    M: int
    B: int
    H: int
    n_in: int
    net: Net
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


def make_buffers(T, B, H, net=Net(), n_in=1, dtype="float64", grad=True, M=1):
    peep, forget = net.peep, net.forget
    nH = (4 if forget else 3) * H
    n_sig = 2 * H if forget else H                      # rows of i (and f)
    n_s = n_in + H + (H if peep else 0) + 1
    S = np.zeros((T + 1, M, n_s, B), dtype)
    S[:, :, -1] = 1.0
    C = S[:, :, n_in + H:n_in + 2 * H] if peep else np.zeros((T + 1, M, H, B), dtype)
    Hs = S[:, :, n_in:n_in + H]
    G = np.zeros((T if grad else 1, M, nH, B), dtype)
    TC = (np.zeros((T if grad else 1, M, H, B), dtype) if net.squash else C[1:])
    v = (lambda a: a[0]) if M == 1 else (lambda a: a)  # per-step views: (features, B), or (M, features, B)
    # rows one tanh covers before c_t is known: i, f (as tanh(z/2)), then g if squashed, and o too if nothing
    # else touches it (no peephole, squashed cell)
    squash = nH if (net.squash and not peep) else n_sig + (H if net.squash else 0)
    fwd = []
    for t in range(T):
        g, tc = (v(G[t]), v(TC[t])) if grad else (v(G[0]), v(TC[0] if net.squash else TC[t]))
        fwd.append((v(S[t]), g, g[..., :squash, :], g[..., :n_sig, :], g[..., :H, :],
                    g[..., H:2 * H, :] if forget else None, g[..., n_sig:n_sig + H, :], g[..., n_sig + H:, :],
                    v(C[t]), v(C[t + 1]), tc, v(Hs[t + 1])))
    buf = Buffers(T, M, B, H, n_in, net, S, C, G, TC, v(np.zeros((M, H, B), dtype)), fwd)
    if grad:
        n_g = nH // H - 1                                # gates before o: i (f) g
        buf.dZ = np.zeros((T, M, nH + 1, B), dtype)
        buf.Ko, buf.Kc = np.zeros((T, M, H, B), dtype), np.zeros((T, M, H, B), dtype)
        buf.K3 = np.zeros((T, M, n_g, H, B), dtype)
        buf.dc, buf.dcn = v(np.zeros((M, H, B), dtype)), v(np.zeros((M, H, B), dtype))
        buf.dhc = v(np.zeros((M, 2 * H if peep else H, B), dtype))
        buf.dW_t = np.zeros((T, M, nH, n_s), dtype)
        buf.scratch = np.zeros((T, M, H, B), dtype)
        dz_ifg = [v(buf.dZ[t, :, :n_sig + H].reshape(M, n_g, H, B)) for t in range(T)]
        assert all(np.shares_memory(a, buf.dZ) for a in dz_ifg[:1])   # a view: the loop writes through it
        buf.bwd = [(v(buf.dZ[t]), dz_ifg[t], v(buf.dZ[t, :, n_sig + H:nH]),
                    v(G[t, :, H:2 * H]) if forget else None, v(buf.Kc[t]), v(buf.Ko[t]), v(buf.K3[t]))
                   for t in reversed(range(T))]
    return buf


def buffers_for(params, x, net=None):
    """Buffers for one model's params and its input x (L, B, n_in)."""
    T, B, n_in = x.shape
    return make_buffers(T, B, params["Wh"].shape[0], net or default_net(params), n_in, params["Wh"].dtype)


def forward(params, x, buf=None, state=None):
    """x: (L, B, n_in) -> pred (L, B) and the final state (h, c), each (H, B). state: the initial (h, c), zero if
    None. Fills buf (made here for the seed's architecture if None; L <= buf.T), which backward() then reads.
    With buf.M > 1 every parameter, x (L, M, B, n_in), pred, h and c carry a model axis after the time axis."""
    if buf is None:
        buf = buffers_for(params, x)
    net, H, n_in, M = buf.net, buf.H, buf.n_in, buf.M
    peep, forget, squash = net.peep, net.forget, net.squash
    o_apart = peep or not squash                        # o squashed on its own, after c_t
    mm = np.dot if M == 1 else np.matmul                # stacked matmul: each model's slice is its np.dot
    L = x.shape[0]
    buf.W, Ws = fused_weights(params, net)              # backward() reads buf.W
    half = np.array(0.5, Ws.dtype)                       # a 0-d array: cheaper per call than a Python float
    p_o_half = np.repeat(0.5 * params["p_o"][..., None], buf.B, axis=-1) if peep else None  # pre-broadcast
    buf.S[:L, :, :n_in] = (x if M > 1 else x[:, None]).swapaxes(-1, -2)
    buf.S[0, :, n_in:n_in + H] = 0.0 if state is None else state[0]
    buf.C[0] = 0.0 if state is None else state[1]
    tmp = buf.tmp
    # In both time loops every call writes into a preallocated array, passed positionally (ufunc(a, b, out)).
    for s, z, z_sq, z_sig, i, f, g, o, c_prev, c, tc, h in (buf.fwd if L == buf.T else buf.fwd[:L]):
        mm(Ws, s, z)                        # z (gates halved); i, f already include p ⊙ c_{t-1}
        np.tanh(z_sq, z_sq)                 # i, f: tanh(z/2); g = tanh(z_g) if squashed; o too if not apart
        np.multiply(z_sig, half, z_sig)
        np.add(z_sig, half, z_sig)          # i, f = (1 + tanh(z/2)) / 2 = σ(z)
        np.multiply(i, g, tmp)
        if forget:
            np.multiply(f, c_prev, c)
            np.add(c, tmp, c)               # c_t = f c_{t-1} + i g
        else:
            np.add(c_prev, tmp, c)          # c_t = c_{t-1} + i g
        if peep:
            np.multiply(p_o_half, c, tmp)
            np.add(o, tmp, o)
        if o_apart:
            np.tanh(o, o)
        np.multiply(o, half, o)
        np.add(o, half, o)                  # o = σ(z_o + p_o c_t)
        if squash:
            np.tanh(c, tc)
            np.multiply(o, tc, h)           # h_t = o tanh(c_t)
        else:
            np.multiply(o, c, h)            # h_t = o c_t
    h_all = buf.S[1:L + 1, :, n_in:n_in + H]
    Wy, by = params["Wy"].reshape(M, H), params["by"].reshape(M, 1)
    if M == 1:                                                  # the same numbers, without the stack's copy
        a = (np.einsum("h,thb->tb", Wy[0], h_all[:, 0]) + by[0, 0])[:, None]
    else:
        a = np.stack([np.einsum("h,thb->tb", Wy[m], h_all[:, m]) + by[m, 0] for m in range(M)], axis=1)
    pred = 0.5 * (1 + np.tanh(0.5 * a)) if net.out == "sigmoid" else a
    h_L, c_L = buf.S[L, :, n_in:n_in + H].copy(), buf.C[L].copy()
    return (pred, (h_L, c_L)) if M > 1 else (pred[:, 0], (h_L[0], c_L[0]))


def backward(params, buf, dpred, lengths=None, truncate=False):
    """BPTT through the cache forward() left in buf. dpred: (L, B) dLoss/d(output unit's input) (with buf.M > 1:
    (L, M, B), and lengths: model m's window is its first lengths[m] steps, its dpred zero after them). Returns
    grads keyed like params. The initial state is a constant: no gradient flows into it. truncate: the paper's
    two cuts (the gradient the online learner follows): h_{t-1} enters the gates as a constant, and no error flows
    from a gate back into c through a peephole (the Wh and peephole terms of dh_{t-1}, dc_{t-1} and dc below).

    Per step, mirroring the forward (dh, dc: total gradient reaching h_t, c_t; tc = tanh(c_t), or c_t unsquashed):
        dz_o = dh ⊙ tc ⊙ o(1-o)
        dc   = dc_{from t+1} + dh ⊙ o ⊙ tc' + p_o ⊙ dz_o                         tc' = 1 - tc² or 1
        dz_i = dc ⊙ g ⊙ i(1-i),  dz_f = dc ⊙ c_{t-1} ⊙ f(1-f),  dz_g = dc ⊙ i ⊙ g'     g' = 1 - g² or 1
        dh_{t-1} = dz Wh^T (+ dpred_{t-1} Wy),  dc_{t-1} = f ⊙ dc + p_i ⊙ dz_i + p_f ⊙ dz_f   (no forget gate: f=1)
    Every factor that does not depend on dh or dc is computed for all steps before the loop, and the weight
    gradients after it as one contraction over each model's steps."""
    net, H, n_in, M, B = buf.net, buf.H, buf.n_in, buf.M, buf.B
    peep, forget = net.peep, net.forget
    mm = np.dot if M == 1 else np.matmul
    L = dpred.shape[0]
    lengths = [L] * M if lengths is None else lengths
    dp = dpred if M > 1 else dpred[:, None]             # (L, M, B)
    W = buf.W if M > 1 else buf.W[None]
    nH = W.shape[1]
    n_sig = 2 * H if forget else H
    G, tc, c_prev = buf.G[:L], buf.TC[:L], buf.C[:L]
    i, g, o = G[:, :, :H], G[:, :, n_sig:n_sig + H], G[:, :, n_sig + H:]   # f enters through the i-and-f block
    Ko, Kc, K3 = buf.Ko[:L], buf.Kc[:L], buf.K3[:L]         # written in place: no temporaries of size L
    np.subtract(1, o, out=Ko)
    Ko *= o
    Ko *= tc                                                  # Ko = tc o (1-o):  dz_o = dh Ko
    if net.squash:
        np.multiply(tc, tc, out=Kc)
        np.subtract(1, Kc, out=Kc)
        Kc *= o                                               # Kc = o (1 - tanh²c_t) (+ p_o Ko):  dc += dh Kc
    else:
        np.copyto(Kc, o)                                      # Kc = o (+ p_o Ko)
    if peep and not truncate:
        np.multiply(params["p_o"].reshape(M, H, 1), Ko, out=buf.scratch[:L])
        Kc += buf.scratch[:L]
    n_g = n_sig // H                                          # σ gates before g: i, f (or i alone)
    k_sig, k_i, k_g = K3[:, :, :n_g], K3[:, :, 0], K3[:, :, n_g]   # dz_i(f)g = K3 dc
    s_sig = G[:, :, :n_sig].reshape(L, M, n_g, H, B)         # i and f as one block
    np.subtract(1, s_sig, out=k_sig)
    k_sig *= s_sig
    k_i *= g                                                  # g i (1-i)
    if forget:
        K3[:, :, 1] *= c_prev                                 # c_{t-1} f (1-f)
    if net.squash:
        np.multiply(g, g, out=k_g)
        np.subtract(1, k_g, out=k_g)
        k_g *= i                                              # i (1-g²)
    else:
        np.copyto(k_g, i)                                     # i
    nh = 2 * H if peep else H
    WT = np.zeros((M, nh, nH + 1), W.dtype)        # dz_t and dpred_{t-1} -> dh_{t-1} (and peephole dc_{t-1})
    if not truncate:
        WT[:, :, :nH] = W[:, :, n_in:n_in + nh].swapaxes(-1, -2)
    WT[:, :H, nH] = params["Wy"].reshape(M, H)
    WT = WT if M > 1 else WT[0]
    dZ, dc, dcn, dhc = buf.dZ[:L], buf.dc, buf.dcn, buf.dhc
    dZ[1:, :, nH] = dp[:-1]
    dh, dc_peep = dhc[..., :H, :], dhc[..., H:, :]
    np.multiply(params["Wy"][..., None], dpred[-1][..., None, :], out=dh)   # dh_{L-1}: the readout alone
    dc_peep[...] = 0.0
    dcn[...] = 0.0
    dc_g = dc[..., None, :, :]                              # dc against each gate block of K3
    for dz, dz_ifg, dz_o, f_t, Kc_t, Ko_t, K3_t in (buf.bwd if L == buf.T else buf.bwd[buf.T - L:]):
        np.multiply(dh, Kc_t, dc)                           # t = L-1 .. 0; dh holds dh_t
        np.add(dc, dcn, dc)                                 # dc_t
        np.multiply(K3_t, dc_g, dz_ifg)                     # dz_i, dz_f, dz_g
        np.multiply(dh, Ko_t, dz_o)                         # dz_o
        mm(WT, dz, dhc)                                     # dh_{t-1} = dz_t Wh^T + dpred_{t-1} Wy; p_i dz_i + p_f dz_f
        if forget:
            np.multiply(f_t, dc, dcn)
            if peep:
                np.add(dcn, dc_peep, dcn)                   # dc_{t-1} from step t
        elif peep:
            np.add(dc, dc_peep, dcn)
        else:
            np.copyto(dcn, dc)
    dZ = dZ[:, :, :nH]
    dW_t = np.matmul(dZ, buf.S[:L].swapaxes(-1, -2), out=buf.dW_t[:L])   # dz_t s_t^T, (L, M, nH, n_s)
    per_model = []
    for m, Lm in enumerate(lengths):
        dW = dW_t[:Lm, m].sum(axis=0)                         # Σ_t over the model's own steps
        grads = {"Wx": dW[:, :n_in].T.copy(), "Wh": dW[:, n_in:n_in + H].T.copy(), "b": dW[:, -1].copy()}
        if peep:
            P = dW[:, n_in + H:n_in + 2 * H]
            grads["p_i"] = np.diagonal(P[:H]).copy()
            if forget:
                grads["p_f"] = np.diagonal(P[H:2 * H]).copy()
            grads["p_o"] = np.einsum("thb,thb->h", dZ[:Lm, m, n_sig + H:], buf.C[1:Lm + 1, m])
        grads["Wy"] = np.einsum("thb,tb->h", buf.S[1:Lm + 1, m, n_in:n_in + H], dp[:Lm, m])
        grads["by"] = np.array([np.ascontiguousarray(dp[:Lm, m]).sum()], dpred.dtype)
        per_model.append(grads)
    if M == 1:
        return {k: per_model[0][k] for k in params}
    return {k: np.stack([gm[k] for gm in per_model]) for k in params}


def loss_and_grads(params, batch, buf=None, state=None, lengths=None, truncate=False):
    """Objective ½ Σ_t (pred - y)², averaged over the batch, and its gradient (truncate: the paper's truncated
    one, see backward()); state: the initial (h, c). With buf.M > 1 the batch's x and y carry a model axis, the
    loss is a list (one per model, over its own lengths[m] steps) and each model's gradient covers its own steps."""
    if buf is None:
        buf = buffers_for(params, batch.x)
    pred, _ = forward(params, batch.x, buf, state)
    err = pred - batch.y
    B = batch.y.shape[-1]
    dpred = err / B
    if buf.net.out == "sigmoid":
        dpred *= pred * (1 - pred)
    if buf.M == 1:
        return 0.5 * float(np.sum(err * err)) / B, backward(params, buf, dpred, truncate=truncate), pred
    losses = []
    for m, Lm in enumerate(lengths or [err.shape[0]] * buf.M):
        e = np.ascontiguousarray(err[:Lm, m])                # the same memory order as the model alone
        losses.append(0.5 * float(np.sum(e * e)) / B)
        dpred[Lm:, m] = 0.0
    return losses, backward(params, buf, dpred, lengths, truncate), pred


# ----------------------------------------------------------------------------------------------------------------
# Optimizer
# ----------------------------------------------------------------------------------------------------------------

def flatten(models):
    """M models' parameters (a list of dicts of the same shapes) in one (M, P) array, a row per model, and the
    parameters rebuilt as views into it: one dict of arrays with a leading model axis (without it when M = 1). The
    optimizer updates the array with a handful of calls, and the models see the update."""
    theta = np.stack([np.concatenate([p.ravel() for p in params.values()]) for params in models])
    M, views, k = len(models), {}, 0
    for name, p in models[0].items():
        views[name] = theta[:, k:k + p.size].reshape((M, *p.shape) if M > 1 else p.shape)
        k += p.size
    return theta, views


def clip_global(g, max_norm):
    """Scale the flat gradient g in place so its L2 norm is at most max_norm. Returns the norm before clipping."""
    norm = math.sqrt(float(g @ g))
    if max_norm < norm < math.inf:                          # a non-finite norm is left for the caller to report
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


EVAL_CHUNK = 256    # held-out sequences per forward pass: bounds the memory of inference
FREE_RUN_CHUNK = 4096  # time steps per forward pass of a free run; the state is carried from chunk to chunk


def test_set(cfg, units=None):
    """The held-out data of cfg's task: the seed's MSD sequences, or a stream of `units` (default test_units)."""
    return TASKS[cfg.task].test(cfg, units or cfg.test_units)


def predict(params, x, chunk=EVAL_CHUNK, net=None, bufs=None):
    """pred (T, N) for x (T, N, n_in), in chunks of sequences, without keeping a cache for backward(). bufs: a dict
    of inference buffers by chunk size, kept by the caller across calls."""
    T, N, n_in = x.shape
    net = net or default_net(params)
    H, dtype = params["Wh"].shape[0], params["Wh"].dtype
    bufs = {} if bufs is None else bufs
    out = []
    for k in range(0, N, chunk):
        xk = x[:, k:k + chunk]
        B = xk.shape[1]
        if B not in bufs:
            bufs[B] = make_buffers(T, B, H, net, n_in, dtype, grad=False)
        out.append(forward(params, xk, bufs[B])[0])
    return np.concatenate(out, axis=1)


def free_run(params, net, x, chunk=FREE_RUN_CHUNK, M=1, buf=None):
    """pred (L,) of one stream x (L, 1, n_in) from the zero state, through time in chunks of `chunk` steps (or of
    an inference buf's length) with the state carried: the model's memory is bounded by the chunk, not by L. With
    M > 1, params carry a model axis and pred is (L, M): every model runs on the same stream."""
    L, _, n_in = x.shape
    H, dtype = params["Wh"].shape[-2], params["Wh"].dtype
    buf = buf or make_buffers(min(chunk, L), 1, H, net, n_in, dtype, grad=False, M=M)
    pred, state = np.empty((L, M), np.float64), None
    with np.errstate(over="ignore", invalid="ignore"):  # an unsquashed cell state may grow without bound in a long
        for k in range(0, L, buf.T):                    # run: its inf/nan outputs fail the criterion, as they should
            xk = x[k:k + buf.T]
            p, state = forward(params, xk if M == 1 else np.broadcast_to(xk[:, None], (len(xk), M, 1, n_in)), buf,
                               state)
            pred[k:k + len(xk)] = p if M == 1 else p[:, :, 0]
    return pred[:, 0] if M == 1 else pred


def evaluate(params, test, net=None, cfg=None, M=1, buf=None):
    """Score params on held-out data: the seed's MSD metrics for a Batch; the paper's criterion for a Stream, on a
    free run. buf: inference buffers kept across calls (a Stream's Buffers, a Batch's dict of them by chunk size).
    With M > 1 (params with a model axis) a list, one per model."""
    net = net or default_net(params)
    if M > 1:
        if isinstance(test, Batch):
            return [evaluate({k: v[m] for k, v in params.items()}, test, net, cfg, 1, buf) for m in range(M)]
        pred = free_run(params, net, test.x, M=M, buf=buf)
        task = TASKS[cfg.task]
        return [stream_score(np.ascontiguousarray(pred[:, m]), test, task.tol, cfg.test_units, task.periodic)
                for m in range(M)]
    if isinstance(test, Batch):
        return score(predict(params, test.x, net=net, bufs=buf), test)
    task = TASKS[cfg.task]
    return stream_score(free_run(params, net, test.x, buf=buf), test, task.tol, cfg.test_units, task.periodic)


def lr_at(cfg, it):
    """Learning rate for iteration it (1-based): lr * factor^floor((it-1) / every)."""
    return cfg.lr * cfg.lr_decay_factor ** ((it - 1) // cfg.lr_decay_every)


def rank(metrics):
    """Larger is better: the best checkpoint. MSD: exact solve rate, then MSE; streams: error-free run, then RMSE."""
    if "solved" in metrics:
        return metrics["solved"], -metrics["mse"]
    return metrics["run_units"], -metrics["rmse"]


def models_line(run):
    """A finished run's final model, and for the stream tasks its best checkpoint, labelled."""
    best = run.get("best")
    return f"final {progress(run['final'])}" + (f" | best {progress(best)}" if best and "run_units" in best else "")


def progress(m):
    """The metrics of one evaluation as text."""
    if "solved" in m:
        return f"test mse {m['mse']:.5f}  solved {m['solved']:.3f}  within1 {m['within1']:.3f}"
    s = f"run {m['run_units']:5d} units ({m['run_steps']} steps)  rmse {m['rmse']:.4f}"
    if "period" in m:
        s += "  period " + ("-" if m["period"] is None else f"{m['period']:.4f}")
    return s


class Trained(NamedTuple):
    """What train() returns. final / best: metrics of the last / the best-ranked evaluation (for tasks with
    long > 1 both re-scored over the long free run); best_params: a copy of the best checkpoint's parameters."""
    params: dict
    history: list
    final: dict
    best: dict
    best_params: dict


def train(cfg, seed, test=None, on_eval=None, log=None):
    """Train one model: train_many() of one seed, a diverged model raised as Diverged."""
    tr = train_many(cfg, [seed], test, on_eval, log)[0]
    if isinstance(tr, str):
        raise Diverged(tr)
    return tr


def train_many(cfg, seeds, test=None, on_eval=None, log=None):
    """Train one model per seed, all through one time loop (a model axis; M = len(seeds)). Each model's init and
    training data come from generators derived from its seed alone, and its result is bit-identical to training
    it alone.

    A training step is one window of units from the start of fresh streams (the seed's MSD: one batch of
    sequences). With cfg.window = (min, max), min < max, the window is self-paced: SELF_PACE times the last
    window's error-free run (its shortest over the batch), within [min, max] units; models whose windows are
    shorter than another's have their steps after it masked out of their loss.
    on_eval(record, params) is called after every evaluation of a single model (iteration 0, every
    cfg.eval_every, the last); log(str) receives the progress lines. Returns [Trained, or the one-line message of
    a model whose loss or gradient turned non-finite (it stops learning; the others go on)]."""
    task, net, M = TASKS[cfg.task], net_of(cfg), len(seeds)
    test = test_set(cfg) if test is None else test
    theta, params = flatten([initial_params(cfg, s) for s in seeds])
    model = (lambda m: params) if M == 1 else (lambda m: {k: v[m] for k, v in params.items()})
    data = [rng_for(STREAM_TRAIN, s) for s in seeds]
    opt = adam_init(theta)
    w_min, w_max = cfg.window or (1, 1)
    units = [w_min] * M
    B = 1 if cfg.task in GENERATION else cfg.batch
    buf = make_buffers(cfg.T if cfg.task == "msd" else w_max * unit_len(cfg), B, cfg.hidden, net, 1, cfg.dtype, M=M)
    infer = {} if cfg.task == "msd" else \
        make_buffers(FREE_RUN_CHUNK, 1, cfg.hidden, net, 1, cfg.dtype, grad=False, M=M)   # the evaluations'
    scores = lambda p, data: evaluate(p, data, net, cfg, M, infer) if M > 1 else [evaluate(p, data, net, cfg, 1, infer)]
    history = [[] for _ in seeds]
    best = [{"key": None} for _ in seeds]
    diverged = [None] * M
    t0 = time.perf_counter()
    train_mse = [None] * M  # no training batch seen yet
    seen, steps = 0, [0] * M

    def record(it):
        now = scores(params, test)
        for m, seed in enumerate(seeds):
            if diverged[m]:
                continue
            r = {"iter": it, "seen": seen, "steps": steps[m], "train_mse": train_mse[m], **now[m],
                 "elapsed": time.perf_counter() - t0}
            if cfg.window:
                r["window"] = units[m]
            history[m].append(r)
            if best[m]["key"] is None or rank(r) > best[m]["key"]:
                best[m].update(key=rank(r), iter=it, params={k: v.copy() for k, v in model(m).items()})
            if log:
                eta = r["elapsed"] / it * (cfg.iters - it) if it else 0.0
                tr = f"{train_mse[m]:.5f}" if train_mse[m] is not None else "   -   "
                win = f"  window {units[m]:3d}" if cfg.window else ""
                log(f"seed {seed} it {it:5d}  seen {r['seen']:7d}{win}  train mse {tr}  {progress(r)}"
                    f"  {r['elapsed']:6.1f}s  eta {eta:5.1f}s")
            if on_eval and M == 1:
                on_eval(r, params)

    record(0)
    for it in range(1, cfg.iters + 1):
        batches = [task.make(cfg, data[m], B, units[m]) for m in range(M)]
        lengths = [b.y.shape[0] for b in batches]
        if M == 1:
            batch = batches[0]
        else:
            L = max(lengths)
            pad = lambda a, Lm: np.concatenate([a, np.zeros((L - Lm, *a.shape[1:]), a.dtype)]) if Lm < L else a
            batch = Stream(np.stack([pad(b.x, Lm) for b, Lm in zip(batches, lengths)], axis=1),
                           np.stack([pad(b.y, Lm) for b, Lm in zip(batches, lengths)], axis=1), None)
        loss, grads, pred = loss_and_grads(params, batch, buf, **({"lengths": lengths} if M > 1 else {}))
        losses = [loss] if M == 1 else loss
        g = np.concatenate([grads[k].reshape(M, -1) for k in params], axis=1)
        frozen = [m for m in range(M) if diverged[m]]
        for m in range(M):
            if diverged[m]:
                continue
            norm = clip_global(g[m], cfg.clip)
            if not (math.isfinite(losses[m]) and math.isfinite(norm)):
                diverged[m] = (f"seed {seeds[m]}: non-finite {'loss' if not math.isfinite(losses[m]) else 'gradient'}"
                               f" at iteration {it}")
                frozen.append(m)
        if len(frozen) == M:
            break
        if frozen:
            keep = theta[frozen].copy()
            g[frozen] = 0.0
        adam_step(theta, g, opt, lr_at(cfg, it))
        if frozen:
            theta[frozen] = keep                             # a diverged model stays as it was
        seen += B
        for m in range(M):
            steps[m] += B * lengths[m]
            train_mse[m] = 2 * losses[m] / lengths[m]  # the batch's MSE per step, comparable with the test MSE
            if w_max > w_min and not diverged[m]:
                p_m = pred if M == 1 else pred[:lengths[m], m]
                run = int(first_errors(p_m, batches[m], task.tol)[1].min())
                units[m] = min(w_max, max(w_min, math.ceil(SELF_PACE * run)))
        if it % cfg.eval_every == 0 or it == cfg.iters:
            record(it)
    metrics = lambda r: {k: v for k, v in r.items() if k not in ("iter", "seen", "steps", "train_mse", "elapsed",
                                                                 "window")}
    finals = [metrics(h[-1]) for h in history]
    bests = [{"iter": b["iter"], **metrics(next(r for r in h if r["iter"] == b["iter"]))}
             for h, b in zip(history, best)]
    if task.long > 1:                                        # final and best models re-scored over the long run
        long_test = test_set(cfg, task.long * cfg.test_units)
        best_params = {k: np.stack([b["params"][k] for b in best]) for k in params} if M > 1 else best[0]["params"]
        finals = scores(params, long_test)
        bests = [{"iter": b["iter"], **r} for b, r in zip(best, scores(best_params, long_test))]
    out = []
    for m in range(M):
        if diverged[m]:
            out.append(diverged[m])
            continue
        final, best_rec = finals[m], bests[m]
        out.append(Trained({k: v.copy() for k, v in model(m).items()}, history[m], final, best_rec,
                           best[m]["params"]))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Online learning (--learner rtrl): the paper's truncated gradient, a momentum update at every step, streams that
# end at the first error
# ----------------------------------------------------------------------------------------------------------------

TRAIN_UNITS = 100    # a training stream that runs this many units error-free is a training success and ends there
RTRL_DEFAULTS = {"lr": 1e-5, "max_streams": 10 ** 7, "max_steps": 10 ** 8, "protocol": "paper"}
# When the frozen test runs, and what passes a model (the paper's success rule has two conditions):
PROTOCOLS = {"paper": "a test runs only after a training success (a training stream that ran TRAIN_UNITS units "
                      "error-free); a pass needs both",
             "every-stream": "a test runs after every training stream; any test of test_units units passes"}
STRICT_TOL = 0.15    # the paper's stricter criterion: every pass is re-scored at it (its test's largest |error|)
RTRL_MOMENTUM = {"delays": 0.9999, "nmsd": 0.99, "gts": 0.999, "pfg": 0.99}   # the paper's, per task
CURVE_BINS = 40      # the learning curve: training stream n falls in bin floor(log2 n)
CHECKPOINT_EVERY = 600.0   # seconds between checkpoints of a journaled online job


def nmsd(cfg):
    """The paper's NMSD: the delays task trained on one interval at a time (each starts from the zero state)."""
    return cfg.task == "delays" and cfg.window == (1, 1)


def rtrl_layout(H, n_in=1):
    """Where each weight lives in a model's column of theta, the same for every cell: W (4H, n_s), the fused matrix
    of fused_weights() for the peephole cell with a forget gate (rows i f g o, sources x, h_{t-1}, c_{t-1}, 1; not
    halved), then p_o, Wy, by. A cell without peepholes or without a forget gate has zeros there (cell_mask()):
    every cell shares the layout, so models of all four cells share a time loop."""
    n_s = n_in + 2 * H + 1
    return {"nH": 4 * H, "n_s": n_s, "W": 4 * H * n_s, "p_o": H, "Wy": H, "by": 1}


def cell_mask(net, H, n_in=1):
    """A theta column (rtrl_layout()) with 1 where net's cell holds a weight, 0 where the layout holds a structural
    zero: the c columns off the peephole diagonal, every peephole of a cell without them, the forget gate's row of a
    cell without one."""
    sz = rtrl_layout(H, n_in)
    W = np.ones((sz["nH"], sz["n_s"]))
    W[:, n_in + H:n_in + 2 * H] = 0.0
    if net.peep:
        W[np.arange(2 * H), n_in + H + np.arange(2 * H) % H] = 1.0
    if not net.forget:
        W[H:2 * H] = 0.0
    return np.concatenate([W.ravel(), np.full(H, float(net.peep)), np.ones(H + 1)])


def pack(params, net):
    """A model's parameters (init_params()'s keys for net's cell) as one theta column (rtrl_layout())."""
    H = params["Wh"].shape[0]
    full = dict(params)
    if not net.forget:                                # the forget gate's block: zeros
        ins = lambda a: np.concatenate([a[..., :H], np.zeros_like(a[..., :H]), a[..., H:]], axis=-1)
        full.update(Wx=ins(params["Wx"]), Wh=ins(params["Wh"]), b=ins(params["b"]))
    for k in PEEPHOLES:
        full.setdefault(k, np.zeros(H, params["Wh"].dtype))
    W = fused_weights(full, Net(True, True))[0]
    return np.concatenate([W.ravel(), full["p_o"], params["Wy"], params["by"]])


def unpack(col, net, H, n_in=1):
    """The inverse of pack(): net's cell's parameter dict (init_params()'s keys and shapes)."""
    sz = rtrl_layout(H, n_in)
    W = col[:sz["W"]].reshape(sz["nH"], sz["n_s"])
    keep = np.r_[0:H, (H if net.forget else 2 * H):4 * H]   # the rows of net's gates
    p = {"Wx": W[keep, :n_in].T.copy(), "Wh": W[keep, n_in:n_in + H].T.copy(), "b": W[keep, -1].copy()}
    k = sz["W"]
    if net.peep:
        cols = np.arange(H) + n_in + H
        p["p_i"] = W[np.arange(H), cols].copy()
        if net.forget:
            p["p_f"] = W[H + np.arange(H), cols].copy()
        p["p_o"] = col[k:k + H].copy()
    k += H
    p["Wy"], p["by"] = col[k:k + H].copy(), col[k + H:k + H + 1].copy()
    return {k: p[k] for k in PARAM_NAMES if k in p}


def delay_tape(rng, cfg):
    """A training tape of the delays task: (y, ends, starts), 8 x TRAIN_UNITS of the longest units long; starts[p]
    is where a training stream that ended at step p restarts: the first step after the interval that holds p."""
    L = 8 * TRAIN_UNITS * unit_len(cfg)
    s = delay_stream(rng, 1, L, cfg.F, cfg.I)
    ends = s.ends[:, 0]
    e = np.flatnonzero(ends)
    nxt = np.searchsorted(e, np.arange(L))                       # the first end at or after p
    starts = np.where(nxt < e.size, e[np.minimum(nxt, e.size - 1)] + 1, L)
    return s.y[:, 0], ends, starts


@dataclass
class Spec:
    """One model of an online job: what it learns from and how. y, ends: its test stream (the task's held-out
    stream, and for GTS and PFG also its training stream: both start at phase 0); net: its cell and output unit;
    delays: its Config when its training streams are drawn (the delays task), else None; the rest: the learner's
    settings."""
    key: str
    seed: int
    params: dict
    y: np.ndarray
    ends: np.ndarray
    lr: float
    momentum: float
    tol: float
    test_units: int
    max_streams: int
    max_steps: int
    net: Net = Net()
    has_input: bool = False
    delays: "Config" = None
    nmsd: bool = False
    protocol: str = "every-stream"
    start: dict = None          # where a model that stopped at an earlier budget goes on from (Online.state_of())


def spec_of(cfg, seed, key=None, start=None):
    """The Spec of an online job (cfg.learner == "rtrl"); start: the state its record kept when it stopped at a
    smaller budget (Online.state_of()), to go on from there."""
    # the test stream; GTS and PFG also train on it, so it runs at least a training success's units
    test = stream_test(cfg, cfg.test_units if cfg.task == "delays" else max(cfg.test_units, TRAIN_UNITS))
    y, ends = test.y[:, 0], test.ends[:, 0]
    return Spec(key or job_key(cfg, seed), seed, initial_params(cfg, seed), y, ends, cfg.lr, cfg.momentum,
                TASKS[cfg.task].tol, cfg.test_units, cfg.max_streams, cfg.max_steps, net_of(cfg),
                cfg.task == "delays", cfg if cfg.task == "delays" else None, nmsd(cfg), cfg.protocol, start)


# The per-model arrays of an Online job that its checkpoint holds (the model axis last); the rest is rebuilt.
STATE = ("theta", "D", "S", "Sens", "train", "pos", "trpos", "units", "slen", "left", "streams", "steps",
         "ft_streams", "ft_steps", "next_stop", "final", "cur_max", "cur_run", "cur_sum", "curve_max", "curve_run",
         "curve_sum", "err_max", "last_max")


class Online:
    """M models that learn online through one time loop, the model axis last in every array (a model's values are
    a column and every operation is elementwise along it, so a model's bits do not depend on its companions).

    Per step each model reads x_t and y_t at its own stream position, runs one step of the cell and learns with the
    paper's truncated gradient (rtrl_layout() for the weights; s_t: the sources of every unit):
        z = W s_t,  s_t = [x_t; h_{t-1}; c_{t-1} (peephole cell); 1]      i, f = σ(z),  g = z_g or tanh(z_g)
        c_t = f c_{t-1} + i g,  o = σ(z_o + p_o c_t),  tc = c_t or tanh(c_t),  h_t = o tc,  pred = out(Wy h_t + by)
        (out: each model's own output unit, σ or linear; net gives the cell, its `out` is not read)
        δ = (pred - y) out',  e_h = Wy δ,  dz_o = e_h tc o(1 - o),  e_c = e_h o tc'
        sensitivities of c_t for the weights of i, f, g (row u, source m), zero at each stream's start:
            ds_u,m = f ds_u,m + K_u s_m,   K_i = g i(1 - i),  K_f = c_{t-1} f(1 - f),  K_g = i g'
        ∇W_u = e_c ds_u (u = i, f, g),  ∇W_o = dz_o s_t,  ∇p_o = dz_o c_t,  ∇Wy = δ h_t,  ∇by = δ
        Δθ(t) = momentum Δθ(t-1) - lr ∇θ,   θ += Δθ(t)
    (tc' = 1 or 1 - tc², g' = 1 or 1 - g²; the 1997 cell: f = 1.) h_{t-1} enters as a constant and no error flows
    from a gate into c through a peephole: the paper's two cuts, so the sensitivities are per cell and exact.

    The protocol: a training stream starts from the zero state and ends at its first error (|pred - y| >= tol; a
    non-finite output is an error) or after TRAIN_UNITS error-free units (a training success); the weights move at
    every one of its steps. Then the frozen model runs its test stream from the zero state until its first error or
    test_units units: a pass, and the model stops. Under the paper's protocol (PROTOCOLS) the test runs only after a
    training success, under "every-stream" after every training stream. Every stream records its largest
    |pred - y| (err_max; last_max: of the stream that ended last), so a pass knows its margin to tol. A model also
    stops after the test of its max_streams-th training stream, after the test of the stream its max_steps-th
    training step cut short, or when its weights turn non-finite (diverged). A frozen model's gradient is computed and multiplied by 0: a test
    whose state overflows leaves non-finite momentum, and the model diverges at its next training step."""

    def __init__(self, H, specs, dtype="float64", engine="numpy"):
        self.specs, self.engine = list(specs), engine
        squash = {sp.net.squash for sp in self.specs}
        assert len(squash) <= 1, "one architecture a job: its cells squash or do not"
        self.squash, self.H, self.dtype = squash.pop() if squash else True, H, dtype
        self.sizes = rtrl_layout(H)
        self.done = {}                              # key -> result of a model that stopped
        self.elapsed, self.t, self.looked = 0.0, 0, False   # t: time steps of the loop (every model's age)
        self.codes = [CODE]                         # the module versions that ran this job, oldest first
        self.engines = [engine]                     # and the engines
        M = len(self.specs)
        n_s, nH = self.sizes["n_s"], self.sizes["nH"]
        self.rngs = [rng_for(STREAM_TRAIN, sp.seed) if sp.delays else None for sp in self.specs]
        self.tape_states = [sp.start["tape_state"] if sp.start and sp.delays else r.bit_generator.state if r else None
                            for sp, r in zip(self.specs, self.rngs)]
        a = {"theta": np.zeros((sum(v for k, v in self.sizes.items() if k not in ("nH", "n_s")), M), dtype)}
        for m, sp in enumerate(self.specs):
            a["theta"][:, m] = pack(sp.params, sp.net)
        a["D"] = np.zeros_like(a["theta"])
        a["S"] = np.zeros((n_s, M), dtype)
        a["S"][-1] = 1.0
        a["Sens"] = np.zeros((3, H, n_s, M), dtype)
        a["train"] = np.ones(M, bool)
        a["final"] = np.zeros(M, bool)
        a["err_max"], a["last_max"] = np.zeros(M, dtype), np.zeros(M, dtype)
        for k in ("pos", "trpos", "units", "slen", "streams", "steps", "cur_max", "cur_run", "cur_sum"):
            a[k] = np.zeros(M, np.int64)
        a["ft_streams"], a["ft_steps"], a["next_stop"] = (np.full(M, v, np.int64) for v in (-1, -1, 1))
        a["left"] = np.array([sp.max_steps for sp in self.specs], np.int64)
        for k in ("curve_max", "curve_run", "curve_sum"):
            a[k] = np.zeros((CURVE_BINS, M), np.int64)
        self.a = a
        self._tapes()
        a["pos"][:] = a["trpos"][:] = [0 if sp.delays else self.test_off for sp in self.specs]
        for m, sp in enumerate(self.specs):
            if sp.start:
                self._go_on(m, sp)
        self._bind()

    def _go_on(self, m, sp):
        """Model m from the state its record kept when it stopped at a smaller budget (state_of()), under its
        spec's budget now: its weights, momentum, counters, learning curve, stream positions and generator, as
        they were after its last test, with the budget's marks lifted."""
        a, st = self.a, sp.start
        for k in STATE:
            a[k][..., m] = np.array(st["arrays"][k], a[k].dtype)
        off = 0 if sp.delays else self.test_off        # a GTS or PFG stream's place on this job's tape
        a["pos"][m], a["trpos"][m] = st["arrays"]["pos"] + off, st["arrays"]["trpos"] + off
        if sp.delays:
            self.rngs[m].bit_generator.state = st["rng"]
        n = int(a["streams"][m])
        a["final"][m], a["left"][m] = False, sp.max_steps - a["steps"][m]
        a["next_stop"][m] = min(1 << n.bit_length(), sp.max_streams)

    # -- tapes: each model's streams as columns of (width, M) arrays, read at the flat index pos * M + m ----------
    def _tapes(self):
        """Every model's tape: its training tape (delays) in rows [0, test_off), its test stream from test_off
        (also the training stream of GTS and PFG). A delays model's tape is drawn from its generator, set to its
        tape_state first."""
        M = len(self.specs)
        trains = []
        for m, sp in enumerate(self.specs):
            if sp.delays:
                self.rngs[m].bit_generator.state = self.tape_states[m]
                trains.append(delay_tape(self.rngs[m], sp.delays))
            else:
                trains.append(None)
        self.test_off = max([len(t[0]) for t in trains if t is not None], default=0)
        width = self.test_off + max((len(sp.y) for sp in self.specs), default=0)
        Y, X = np.zeros((width, M), self.dtype), np.zeros((width, M), self.dtype)
        E = np.zeros((width, M), bool)
        starts = np.zeros((width, M), np.int64)          # where a stream that ended at each step restarts
        self.refill_at = np.zeros(M, np.int64)
        for m, (sp, tr) in enumerate(zip(self.specs, trains)):
            t = slice(self.test_off, self.test_off + len(sp.y))
            Y[t, m], E[t, m] = sp.y, sp.ends
            if sp.has_input:
                X[t, m] = sp.ends
            starts[:, m] = self.test_off
            self.refill_at[m] = self.test_off + 1          # GTS, PFG: a training stream restarts at test_off
            if tr is not None:
                n = len(tr[0])
                Y[:n, m], E[:n, m], X[:n, m], starts[:n, m] = tr[0], tr[1], tr[1], tr[2]
                self.refill_at[m] = n - TRAIN_UNITS * unit_len(sp.delays)
        self.Y, self.X, self.E = Y.ravel(), X.ravel(), E.ravel()
        self.starts = (starts * M + np.arange(M)).ravel()  # as flat indices

    def _refill(self, m):
        """Draw model m's next training tape (its stream goes on from its generator); it restarts at its start."""
        sp, M = self.specs[m], len(self.specs)
        self.tape_states[m] = self.rngs[m].bit_generator.state
        y, ends, starts = delay_tape(self.rngs[m], sp.delays)
        n = len(y)
        self.Y.reshape(-1, M)[:n, m], self.E.reshape(-1, M)[:n, m], self.X.reshape(-1, M)[:n, m] = y, ends, ends
        self.starts.reshape(-1, M)[:n, m] = starts * M + m
        self.w["trf"][m] = m

    # -- the time loop -------------------------------------------------------------------------------------------
    def _bind(self):
        """The loop's work arrays and views into the state, built once per set of models (self.w)."""
        H, a, M, dt, sz, squash = self.H, self.a, len(self.specs), self.dtype, self.sizes, self.squash
        n_s, nH = sz["n_s"], sz["nH"]
        theta, S = a["theta"], a["S"]
        w = {"W": theta[:sz["W"]].reshape(nH, n_s, M), "p_o": theta[sz["W"]:sz["W"] + H]}
        k = sz["W"] + H
        w["Wy"], w["by"] = theta[k:k + H], theta[k + H]
        w["g"] = g = np.zeros_like(theta)
        gW = g[:sz["W"]].reshape(nH, n_s, M)
        w.update(gW_ifg=gW[:3 * H].reshape(3, H, n_s, M), gW_o=gW[3 * H:], g_po=g[sz["W"]:sz["W"] + H],
                 g_Wy=g[k:k + H], g_by=g[k + H])
        w["mask"] = np.array([cell_mask(sp.net, H) for sp in self.specs], dt).reshape(M, len(theta)).T.copy()
        w["z"] = z = np.zeros((nH, M), dt)
        w.update(i=z[:H], f=z[H:2 * H], g_=z[2 * H:3 * H], o=z[3 * H:], z_sig=z[:2 * H].reshape(2, H, M),
                 ztmp=np.zeros((nH, M), dt))
        n_t = (3 if squash else 2) * H                # the rows one tanh covers before c_t: i, f (and g)
        half = np.full((nH, 1), 0.5, dt)
        half[2 * H:] = 1.0                            # g as it is; o halved after its peephole term
        sa, sb = np.full((n_t, 1), 0.5, dt), np.full((n_t, 1), 0.5, dt)
        sa[2 * H:], sb[2 * H:] = 1.0, 0.0             # g rows: tanh(z_g) as it is
        w.update(z_t=z[:n_t], half=half, sa=sa, sb=sb)
        w["W_cols"], w["S_rows"] = [w["W"][:, j] for j in range(n_s)], [S[j] for j in range(n_s)]
        w["c_prev"] = S[1 + H:1 + 2 * H]
        w["hc"] = hc = np.zeros((2 * H, M), dt)
        w.update(h=hc[:H], c=hc[H:], tc=np.zeros((H, M), dt) if squash else hc[H:])
        for name in ("tmpH", "tmpH2", "eh", "dzo", "es"):
            w[name] = np.zeros((H, M), dt)
        for name in ("out_a", "pred", "err", "dl", "y", "sg"):
            w[name] = np.zeros(M, dt)
        w["K3"] = K3 = np.zeros((3, H, 1, M), dt)
        w.update(K_sig=K3[:2, :, 0], K_i=K3[0, :, 0], K_f=K3[1, :, 0], K_g=K3[2, :, 0],
                 Stmp=np.zeros_like(a["Sens"]), S4=S[None, None], S3=S[None], tmpP=np.zeros_like(theta))
        sp = self.specs
        w["tol"] = np.array([s.tol for s in sp], dt)
        lr = np.array([s.lr for s in sp], dt)
        # each model's units to reach, -lr and momentum: while it trains (rows of mode_train), while it is tested
        w["mode_train"] = np.stack([np.full(M, TRAIN_UNITS, dt), -lr, np.array([s.momentum for s in sp], dt)])
        w["mode_test"] = np.stack([np.array([s.test_units for s in sp], dt), -lr * 0.0, np.ones(M, dt)])
        w["nmsd"] = np.array([s.nmsd for s in sp], bool)
        w["paper"] = np.array([s.protocol == "paper" for s in sp], bool)
        w["max_streams"] = np.array([s.max_streams for s in sp], np.int64)
        w["any_paper"] = bool(w["paper"].any())
        w["sig_m"] = np.array([s.net.out == "sigmoid" for s in sp], bool)
        w["no_f"] = np.array([not s.net.forget for s in sp], bool)
        w["lin_m"], w["any_sig"], w["any_no_f"] = ~w["sig_m"], bool(w["sig_m"].any()), bool(w["no_f"].any())
        w["mixed"] = w["any_sig"] and not w["sig_m"].all()
        w["any_nmsd"], w["any_delays"] = bool(w["nmsd"].any()), any(s.delays for s in sp)
        w["any_input"] = any(s.has_input for s in sp)
        train = a["train"]
        w["mode"] = np.where(train, w["mode_train"], w["mode_test"])
        w["base"] = np.arange(M, dtype=np.int64)
        w["fidx"] = a["pos"] * M + w["base"]
        w["trf"] = a["trpos"] * M + w["base"]
        w["test_f"] = self.test_off * M + w["base"]
        w["refill_f"] = self.refill_at * M + w["base"]
        for name in ("ok", "endb", "done_u", "ends", "tr_end", "te_end", "tmpb", "out_b", "untested"):
            w[name] = np.zeros(M, bool)
        w["ival"] = np.zeros(M, np.int64)
        self.w = w
        self.last = {k: w[k] for k in ("tr_end", "te_end", "done_u", "pred")}

    def _sync(self):
        """The stream positions back from the loop's flat indices."""
        M = len(self.specs)
        if M:
            self.a["pos"][:] = (self.w["fidx"] - self.w["base"]) // M
            self.a["trpos"][:] = (self.w["trf"] - self.w["base"]) // M

    def run(self, K):
        """Up to K steps of every running model; returns the steps run. Stops early (self.looked) when a model
        needs Python: a training success, a test's end that stops the model, a learning-curve bin to close. A
        diverging model's overflows are not warned about: its non-finite weights stop it."""
        if not self.specs:
            return 0
        with np.errstate(all="ignore"):
            return self._run(K)

    def _run(self, K):
        """Up to K steps of the loop: each step is the parts of _step() in order; it stops early after a step at
        which a stream ended and a model needs Python (self.looked)."""
        read, forward, errors, sensitivities, gradient, update, protocol, stream_ends = self._step()
        if self.engine == "numba":
            return self._run_compiled(K, stream_ends)
        n = 0
        while n < K:
            n += 1
            read()
            forward()
            errors()
            sensitivities()
            gradient()
            update()
            if protocol() and stream_ends():
                break
        self.t += n
        return n

    def _run_compiled(self, K, stream_ends):
        """_run() by online_kernel(): its steps compiled, a step's stream ends that need Python by stream_ends()."""
        a, w, kernel = self.a, self.w, compiled_kernel()
        args = (self.H, self.squash, w["any_input"], w["any_paper"], w["any_nmsd"], w["any_delays"], a["theta"],
                a["D"], w["mask"], a["S"], a["Sens"], w["mode"], w["mode_train"], w["mode_test"], w["tol"],
                w["sig_m"], w["no_f"], w["paper"], w["nmsd"], self.Y, self.X, self.E, self.starts, w["fidx"],
                w["trf"], w["test_f"], w["refill_f"], a["train"], a["units"], a["slen"], a["left"], a["streams"],
                a["steps"], a["next_stop"], a["cur_max"], a["cur_run"], a["cur_sum"], a["err_max"], a["last_max"],
                w["pred"], w["ok"], w["endb"], w["done_u"], w["out_b"], w["ends"], a["curve_max"], a["curve_run"],
                a["curve_sum"], a["final"], w["max_streams"])
        n = 0
        while n < K:
            k, pending = kernel(K - n, *args)
            n += k
            if pending and stream_ends():
                break
        self.t += n
        return n

    def _step(self):
        """One time step of every model, as named parts over the loop's arrays (self.w, self.a; the views and
        buffers are plumbing): each part computes the equations in its docstring, elementwise along the model
        axis. Built at each run(): closures, so the loop pays no lookups."""
        H, a, w, M, dt, squash = self.H, self.a, self.w, len(self.specs), self.dtype, self.squash
        sg, sig_m, lin_m, any_sig, mixed = (w[k] for k in ("sg", "sig_m", "lin_m", "any_sig", "mixed"))
        no_f, any_no_f = w["no_f"], w["any_no_f"]
        theta, D, S, Sens, g_all, tmpP = a["theta"], a["D"], a["S"], a["Sens"], w["g"], w["tmpP"]
        W_cols, S_rows, z, ztmp, half, z_t, sa, sb = (w[k] for k in ("W_cols", "S_rows", "z", "ztmp", "half", "z_t",
                                                                      "sa", "sb"))
        i, f, g, o, z_sig, c_prev = (w[k] for k in ("i", "f", "g_", "o", "z_sig", "c_prev"))
        hc, h, c, tc, tmpH, tmpH2, eh, dzo, es = (w[k] for k in ("hc", "h", "c", "tc", "tmpH", "tmpH2", "eh", "dzo",
                                                                 "es"))
        p_o, Wy, by, out_a, pred, err, dl, y = (w[k] for k in ("p_o", "Wy", "by", "out_a", "pred", "err", "dl", "y"))
        K3, K_sig, K_i, K_f, K_g, Stmp, S4, S3 = (w[k] for k in ("K3", "K_sig", "K_i", "K_f", "K_g", "Stmp", "S4",
                                                                 "S3"))
        gW_ifg, gW_o, g_po, g_Wy, g_by, pmask = (w[k] for k in ("gW_ifg", "gW_o", "g_po", "g_Wy", "g_by", "mask"))
        f4, es4, dzo3 = f[None, :, None], es[None, :, None], dzo[:, None]
        tol, mode, mode_train, mode_test = w["tol"], w["mode"], w["mode_train"], w["mode_test"]
        need, lr_eff, mom_eff = mode                 # each model's, as it trains or is tested
        nmsd_m, any_nmsd, any_delays, any_input = w["nmsd"], w["any_nmsd"], w["any_delays"], w["any_input"]
        fidx, trf, test_f, refill_f = w["fidx"], w["trf"], w["test_f"], w["refill_f"]
        ok, endb, done_u, ends, tr_end, te_end, tmpb, out_b, ival, untested = (
            w[k] for k in ("ok", "endb", "done_u", "ends", "tr_end", "te_end", "tmpb", "out_b", "ival", "untested"))
        paper, any_paper, err_max, last_max = w["paper"], w["any_paper"], a["err_max"], a["last_max"]
        train, units, slen, left = a["train"], a["units"], a["slen"], a["left"]
        streams, steps, next_stop = a["streams"], a["steps"], a["next_stop"]
        cur_max, cur_run, cur_sum = a["cur_max"], a["cur_run"], a["cur_sum"]
        x, hs, Y, X, E, starts = S[0], S[1:-1], self.Y, self.X, self.E, self.starts
        Mi, one, half_, one_ = np.array(M, np.int64), np.array(1, np.int64), np.array(0.5, dt), np.array(1.0, dt)
        nz = np.count_nonzero
        # the ufuncs as local names: a global and an attribute lookup less per call
        mul, add, sub, tanh, copyto = np.multiply, np.add, np.subtract, np.tanh, np.copyto
        l_and, l_or, l_not, l_xor = np.logical_and, np.logical_or, np.logical_not, np.logical_xor
        absolute, less, greater, maximum = np.abs, np.less, np.greater, np.maximum
        ge, le = np.greater_equal, np.less_equal
        W_S = list(zip(W_cols[1:], S_rows[1:]))

        def read():
            """x_t, y_t and whether a unit ends at t, each model at its own stream position."""
            Y.take(fidx, None, y, "wrap")            # (methods and 0-d constants: cheaper calls)
            E.take(fidx, None, endb, "wrap")
            if any_input:                            # (GTS and PFG have none: x stays 0)
                X.take(fidx, None, x, "wrap")

        def forward():
            """z = W s_t;  i, f = σ(z_i, z_f);  g = tanh(z_g) or z_g;  c_t = f c_{t-1} + i g;
            o = σ(z_o + p_o c_t);  h_t = o tc (tc = tanh(c_t) or c_t);  pred = out(Wy h_t + by)."""
            mul(W_cols[0], S_rows[0], z)             # z = W s_t, summed over the sources in a fixed order
            for Wj, sj in W_S:
                mul(Wj, sj, ztmp)
                add(z, ztmp, z)
            mul(z, half, z)                          # i, f halved: σ(a) = (1 + tanh(a/2)) / 2
            tanh(z_t, z_t)
            mul(z_t, sa, z_t)
            add(z_t, sb, z_t)
            if any_no_f:
                copyto(f, one_, where=no_f)          # the 1997 cell: f = 1
            mul(i, g, tmpH)
            mul(f, c_prev, c)
            add(c, tmpH, c)                          # c_t = f c_{t-1} + i g
            mul(p_o, c, tmpH)
            add(o, tmpH, o)
            mul(o, half_, o)
            tanh(o, o)
            mul(o, half_, o)
            add(o, half_, o)                         # o = σ(z_o + p_o c_t)
            if squash:
                tanh(c, tc)
            mul(o, tc, h)                            # h_t = o tc
            mul(Wy[0], h[0], out_a)
            for j in range(1, H):
                mul(Wy[j], h[j], tmpH2[0])
                add(out_a, tmpH2[0], out_a)
            add(out_a, by, pred)                     # the output unit's input a
            if any_sig:                              # pred = σ(a) for the models with a sigmoid output unit
                mul(pred, half_, sg)
                tanh(sg, sg)
                mul(sg, half_, sg)
                add(sg, half_, sg)
                copyto(pred, sg, where=sig_m) if mixed else copyto(pred, sg)

        def errors():
            """ok = |pred - y| < tol (the stream's largest |pred - y| kept);  δ = (pred - y) out';  e_h = Wy δ;
            dz_o = e_h tc o(1 - o);  e_c = e_h o tc'."""
            sub(pred, y, err)
            absolute(err, dl)
            less(dl, tol, ok)                        # NaN is not ok
            maximum(err_max, dl, out=err_max)        # the stream's largest |pred - y| (NaN stays)
            if any_sig:
                sub(one_, pred, dl)
                mul(dl, pred, dl)                    # σ' = pred (1 - pred)
                if mixed:
                    copyto(dl, one_, where=lin_m)    # a linear output unit's: 1
                mul(dl, err, dl)                     # δ = (pred - y) out'
            else:
                copyto(dl, err)
            mul(Wy, dl, eh)                          # e_h
            sub(one_, o, dzo)
            mul(dzo, o, dzo)
            mul(dzo, tc, dzo)
            mul(dzo, eh, dzo)                        # dz_o = e_h tc o (1 - o)
            mul(eh, o, es)
            if squash:
                mul(tc, tc, tmpH)
                sub(one_, tmpH, tmpH)
                mul(es, tmpH, es)                    # e_c = e_h o tc'

        def sensitivities():
            """ds_u,m = f ds_u,m + K_u s_m:  K_i = g i(1 - i),  K_f = c_{t-1} f(1 - f),  K_g = i g'."""
            sub(one_, z_sig, K_sig)
            mul(K_sig, z_sig, K_sig)                 # i (1 - i), f (1 - f)
            mul(K_i, g, K_i)
            mul(K_f, c_prev, K_f)
            mul(Sens, f4, Sens)
            if squash:
                mul(g, g, K_g)
                sub(one_, K_g, K_g)
                mul(K_g, i, K_g)
            else:
                copyto(K_g, i)
            mul(K3, S4, Stmp)
            add(Sens, Stmp, Sens)                    # ds = f ds + K s_t

        def gradient():
            """∇W_u = e_c ds_u (u = i, f, g);  ∇W_o = dz_o s_t;  ∇p_o = dz_o c_t;  ∇Wy = δ h_t;  ∇by = δ; each
            model's cell keeps its own weights only."""
            mul(es4, Sens, gW_ifg)
            mul(dzo3, S3, gW_o)
            mul(dzo, c, g_po)
            mul(dl, h, g_Wy)
            copyto(g_by, dl)
            mul(g_all, pmask, g_all)

        def update():
            """Δθ = momentum Δθ - lr ∇θ;  θ += Δθ (training models; a tested model's lr is 0, its momentum 1);
            then the next step's sources: h_t, c_t."""
            mul(g_all, lr_eff, tmpP)
            mul(D, mom_eff, D)
            add(D, tmpP, D)
            mul(D, train, tmpP)
            add(theta, tmpP, theta)
            copyto(hs, hc)

        def protocol():
            """Each model's stream moves on: a unit that ends error-free counts; the stream ends at an error, at
            its units to reach (TRAIN_UNITS training, test_units tested) or at the step budget. True if a stream
            ended anywhere."""
            add(fidx, Mi, fidx)
            add(slen, one, slen)
            l_and(endb, ok, tmpb)
            add(units, tmpb, units)
            ge(units, need, done_u)
            sub(left, train, left)
            le(left, 0, out_b)                       # the step budget: the stream is cut here, then tested
            l_not(ok, ends)
            l_or(ends, done_u, ends)
            l_or(ends, out_b, ends)
            if any_nmsd:                             # NMSD: every training interval starts from the zero state
                l_and(endb, nmsd_m, tmpb)
                l_and(tmpb, train, tmpb)
                l_not(tmpb, tmpb)
                mul(hs, tmpb, hs)
                mul(Sens, tmpb, Sens)
            return bool(nz(ends))

        def stream_ends():
            """The streams that ended: a training stream's test starts (under the paper's protocol only after a
            training success); after a test, a new training stream; counters and the learning curve; the zero
            state. True (self.looked) if a model needs Python."""
            l_and(ends, train, tr_end)
            l_xor(ends, tr_end, te_end)
            if any_paper:                            # the paper's protocol: no test after a stream without a
                l_not(done_u, untested)              # training success; it ends as a failed test would
                l_and(untested, tr_end, untested)
                l_and(untested, paper, untested)
                l_or(te_end, untested, te_end)
            add(streams, tr_end, streams)
            ge(streams, next_stop, tmpb)
            l_and(tmpb, ends, tmpb)
            l_and(out_b, tr_end, out_b)
            self.looked = bool(nz(tmpb) or nz(out_b) or nz(done_u)) or not math.isfinite(np.dot(pred, pred))
            if self.looked:                          # a curve bin closes before this stream enters it
                self._close_bins(tmpb & tr_end, out_b)
            mul(slen, tr_end, ival)                  # a training stream's length (its erring step included)
            add(steps, ival, steps)
            maximum(cur_run, ival, out=cur_run)      # the learning curve: the longest stream, the mean length,
            add(cur_sum, ival, cur_sum)
            mul(units, tr_end, ival)
            maximum(cur_max, ival, out=cur_max)      # the most units
            if any_delays:                           # the next training stream: the tape's next interval
                sub(fidx, Mi, ival)
                starts.take(ival, None, ival, "wrap")
                copyto(trf, ival, where=tr_end)
                greater(trf, refill_f, tmpb)
                l_and(tmpb, tr_end, tmpb)
                if nz(tmpb):
                    for m in np.flatnonzero(tmpb):
                        self._refill(m)
            l_xor(train, ends, train)
            if any_paper:
                l_or(train, untested, train)
            copyto(fidx, test_f, where=tr_end)
            copyto(fidx, trf, where=te_end)
            l_not(ends, tmpb)
            mul(units, tmpb, units)
            mul(slen, tmpb, slen)
            mul(hs, tmpb, hs)                        # the zero state
            mul(Sens, tmpb, Sens)
            copyto(last_max, err_max, where=ends)
            copyto(err_max, 0.0, where=ends)
            copyto(mode, mode_test)
            copyto(mode, mode_train, where=train)
            return self.looked

        return read, forward, errors, sensitivities, gradient, update, protocol, stream_ends

    # -- Python's part: what run() stopped for -------------------------------------------------------------------
    def _close_bins(self, hit, out_of_steps):
        """Models whose training stream number reached next_stop: at a power of two close the learning curve's bin
        before it; at the budget (streams or steps) mark the stream the last (its test is the model's last)."""
        a = self.a
        for m in np.flatnonzero(hit | out_of_steps):
            n = int(a["streams"][m])
            if hit[m] and n & (n - 1) == 0 and n > 1:
                b = n.bit_length() - 2               # streams [2^b, 2^(b+1)) are complete
                for k in ("max", "run", "sum"):
                    a["curve_" + k][b, m], a["cur_" + k][m] = a["cur_" + k][m], 0
            if out_of_steps[m] or a["final"][m] or n >= self.specs[m].max_streams:
                a["final"][m], a["next_stop"][m], a["left"][m] = True, n, np.iinfo(np.int64).max
            else:
                a["next_stop"][m] = min(1 << n.bit_length(), self.specs[m].max_streams)

    def look(self):
        """After run() stopped for Python: record first training successes; stop the models that passed their
        test, that ended the test of their budget's last stream, or whose weights turned non-finite."""
        a, last = self.a, self.last
        self.looked = False
        tr_end, te_end, done_u = last["tr_end"], last["te_end"], last["done_u"]
        for m in np.flatnonzero(tr_end & done_u & (a["ft_streams"] < 0)):
            a["ft_streams"][m], a["ft_steps"][m] = a["streams"][m], a["steps"][m]
        stop = {int(m): "passed" for m in np.flatnonzero(te_end & done_u)}
        for m in np.flatnonzero(te_end & a["final"]):
            stop.setdefault(int(m), "budget")
        for m in np.flatnonzero(~np.isfinite(last["pred"])):
            if not np.isfinite(a["theta"][:, m]).all():
                stop[int(m)] = "diverged"
        if stop:
            self._finish(stop)

    def result(self, m, outcome):
        """Model m's record: its outcome, counters, learning curve and weights. A stream's length counts its steps,
        the erring one included; the curve's bin k holds training streams 2^k to 2^(k+1) - 1: how many, the most
        units one ran error-free, the longest, the mean length."""
        a, sp = self.a, self.specs[m]
        n = int(a["streams"][m])
        curve = {k: a["curve_" + k][:, m].copy() for k in ("max", "run", "sum")}
        if n:
            b = n.bit_length() - 1                   # the open bin
            for k in ("max", "run", "sum"):
                curve[k][b] = a["cur_" + k][m]
        count = [max(0, min(n, 2 ** (b + 1) - 1) - 2 ** b + 1) for b in range(CURVE_BINS)]
        nb = sum(c > 0 for c in count)
        first = lambda s, t: None if s < 0 else {"streams": int(s), "steps": int(t)}
        steps = int(a["steps"][m])
        worst = float(a["last_max"][m]) if outcome == "passed" else None   # the pass's largest |error|
        before = sp.start or {"age": 0, "codes": [], "engines": []}
        return {"key": sp.key, "seed": sp.seed, "outcome": outcome, "protocol": sp.protocol, "streams": n,
                "steps": steps, "test_max_error": worst, "margin": None if worst is None else sp.tol - worst,
                "strict_pass": None if worst is None else worst < STRICT_TOL,
                "test_steps": before["age"] + self.t - steps - (int(a["slen"][m]) if a["train"][m] else 0),
                "first_train_success": first(a["ft_streams"][m], a["ft_steps"][m]),
                "first_pass": {"streams": n, "steps": steps} if outcome == "passed" else None,
                "codes": list(dict.fromkeys(before["codes"] + self.codes)),
                "engines": list(dict.fromkeys(before["engines"] + self.engines)),
                "longest_units": int(curve["max"].max()), "longest_length": int(curve["run"].max()),
                "curve": {"streams": count[:nb], "max_units": curve["max"][:nb].tolist(),
                          "max_length": curve["run"][:nb].tolist(),
                          "mean_length": [s / c for s, c in zip(curve["sum"][:nb].tolist(), count[:nb])]},
                "params": unpack(a["theta"][:, m].astype(np.float64), sp.net, self.H),
                **({"state": self.state_of(m)} if outcome == "budget" else {})}

    def state_of(self, m):
        """What model m needs to go on training under a larger budget (_go_on()): its column of every STATE array
        (stream positions relative to its own streams), its generator and tape (the delays task), the loop steps
        it has lived, the code versions and engines that trained it. Plain JSON."""
        a, sp = self.a, self.specs[m]
        arrays = {k: a[k][..., m].tolist() for k in STATE}
        off = 0 if sp.delays else self.test_off
        arrays["pos"], arrays["trpos"] = int(a["pos"][m]) - off, int(a["trpos"][m]) - off
        before = sp.start or {"age": 0, "codes": [], "engines": []}
        return {"arrays": arrays, "rng": self.rngs[m].bit_generator.state if sp.delays else None,
                "tape_state": self.tape_states[m], "age": before["age"] + self.t,
                "codes": list(dict.fromkeys(before["codes"] + self.codes)),
                "engines": list(dict.fromkeys(before["engines"] + self.engines))}

    def _finish(self, stop):
        """Record the stopped models' results and drop them from every array."""
        self._sync()
        for m, outcome in stop.items():
            self.done[self.specs[m].key] = self.result(m, outcome)
        M = len(self.specs)
        keep = [m for m in range(M) if m not in stop]
        for k in STATE:
            self.a[k] = np.ascontiguousarray(self.a[k][..., keep])
        cols = lambda v: np.ascontiguousarray(v.reshape(-1, M)[:, keep])
        self.Y, self.X, self.E = cols(self.Y).ravel(), cols(self.X).ravel(), cols(self.E).ravel()
        self.starts = ((cols(self.starts) - np.arange(M)[keep]) // M * len(keep) + np.arange(len(keep))).ravel()
        self.refill_at = self.refill_at[keep]
        self.specs = [self.specs[m] for m in keep]
        self.rngs = [self.rngs[m] for m in keep]
        self.tape_states = [self.tape_states[m] for m in keep]
        self._bind()

    # -- checkpoints: the whole state of the running models and the results of the stopped ones -----------------
    def save(self, path):
        """Write the job's state to path (.npz, compressed, atomically): every STATE array, the generators of the
        delays streams (now and when their tape was drawn), the loop's age and the stopped models' results."""
        self._sync()
        keys = [sp.key for sp in self.specs]
        meta = {"codes": self.codes, "keys": keys, "elapsed": self.elapsed, "t": self.t,
                "rngs": [r.bit_generator.state if r else None for r in self.rngs], "tape_states": self.tape_states,
                "done": {k: {**r, "params": {n: v.tolist() for n, v in r["params"].items()}}
                         for k, r in self.done.items()}, "digest": state_digest(keys, self.a), "engines": self.engines}
        write_atomic(path, lambda fh: np.savez_compressed(fh, meta=json.dumps(meta), **{k: self.a[k] for k in STATE}))

    @classmethod
    def restore(cls, path, H, specs, dtype="float64", other_code=False, engine="numpy"):
        """The job of specs as its checkpoint at path left it; BadGrid if it cannot be read, is another job's, or
        was written by another version of the module (unless other_code: the job goes on under this one, and
        its results list both)."""
        meta, arrays = read_checkpoint(path, H)
        by_key = {sp.key: sp for sp in specs}
        if not set(meta["keys"]) | set(meta["done"]) <= set(by_key):
            raise BadGrid(f"checkpoint {path} holds another job: delete it to start that job over")
        if meta["codes"][-1] != CODE and not other_code:
            raise BadGrid(f"checkpoint {path} was written by code {meta['codes'][-1]}, this is {CODE}: --append "
                          "goes on with this code (the results name both), or delete it to start over")
        engines = meta.get("engines", [meta.get("engine", "numpy")])
        if engines[-1] != engine and not other_code:
            raise BadGrid(f"checkpoint {path} was trained by the {engines[-1]} engine, this is --engine {engine}: "
                          f"use --engine {engines[-1]}, or --append to go on with {engine} (the results name both)")
        eng = cls(H, [by_key[k] for k in meta["keys"]], dtype, engine)
        eng.engines = engines + ([engine] if engines[-1] != engine else [])
        eng.codes = meta["codes"] + ([CODE] if meta["codes"][-1] != CODE else [])
        eng.tape_states = meta["tape_states"]
        eng._tapes()                                 # the delays tapes as they were drawn, then the generators now
        for r, st in zip(eng.rngs, meta["rngs"]):
            if r:
                r.bit_generator.state = st
        eng.a.update(arrays)
        eng.elapsed, eng.t = meta["elapsed"], meta["t"]
        eng.done = {k: {**r, "params": {n: np.array(v) for n, v in r["params"].items()}}
                    for k, r in meta["done"].items()}
        eng._bind()
        return eng


# The online learner's compiled engine (--engine numba): the loop of Online._step() as scalar code, time outer and
# models inner, on the same arrays. Optional: numba is imported and compiles it at the first call (a few seconds,
# then cached). Its tanh is the C library's, which differs from NumPy's in the last bit on some inputs, so its bits
# differ from the NumPy engine's by rounding (the tests bound how far); journals and checkpoints name the engine.
HAVE_NUMBA = importlib.util.find_spec("numba") is not None     # without importing it: every process would pay
ENGINES = ("numpy", "numba")
DEFAULT_ENGINE = "numba" if HAVE_NUMBA else "numpy"


def _put_back(theta, D, S, Sens, th, Dm, Sm, Ss):
    """online_kernel()'s model-major copies back into the loop's arrays (the model axis last)."""
    M, P = th.shape
    H, n_s = Ss.shape[2], Ss.shape[3]
    for m in range(M):
        for q in range(P):
            theta[q, m], D[q, m] = th[m, q], Dm[m, q]
        for k in range(n_s):
            S[k, m] = Sm[m, k]
            for u in range(3):
                for j in range(H):
                    Sens[u, j, k, m] = Ss[m, u, j, k]


def _zero_state(Sm, Ss, m):
    """online_kernel()'s model m back to the zero state: h, c and the sensitivities times 0 (as the NumPy engine
    does: a non-finite value stays non-finite)."""
    H, n_s = Ss.shape[2], Ss.shape[3]
    for j in range(2 * H):
        Sm[m, 1 + j] = Sm[m, 1 + j] * 0.0
    for u in range(3):
        for j in range(H):
            for k in range(n_s):
                Ss[m, u, j, k] = Ss[m, u, j, k] * 0.0


def online_kernel(K, H, squash, any_input, any_paper, any_nmsd, any_delays, theta, D, mask, S, Sens, mode,
                  mode_train, mode_test, tol, sig_m, no_f, paper, nmsd_m, Y, X, E, starts, fidx, trf, test_f,
                  refill_f, train, units, slen, left, streams, steps, next_stop, cur_max, cur_run, cur_sum, err_max,
                  last_max, pred, ok, endb, done_u, out_b, ends, curve_max, curve_run, curve_sum, final, max_streams):
    """Up to K steps of Online._step()'s parts, each model's step in scalars (the same equations, in the same
    order of operations). Returns (steps run, pending): pending when the last step's stream ends need Python (a
    training success, a budget reached, a tape to refill, a non-finite output): Online then runs that step's
    stream_ends() as the NumPy engine does. A learning-curve bin closes here (Online._close_bins())."""
    M, P = theta.shape[1], theta.shape[0]
    # model-major copies of the per-model arrays: each model's numbers contiguous while it steps (the arrays'
    # rows are M apart, which at M >= 256 makes every row of a model fall in one cache set)
    th, Dm, mk = np.empty((M, P)), np.empty((M, P)), np.empty((M, P))
    Sm, Ss = np.empty((M, 2 * H + 2)), np.empty((M, 3, H, 2 * H + 2))
    for m in range(M):
        for q in range(P):
            th[m, q], Dm[m, q], mk[m, q] = theta[q, m], D[q, m], mask[q, m]
        for k in range(2 * H + 2):
            Sm[m, k] = S[k, m]
            for u in range(3):
                for j in range(H):
                    Ss[m, u, j, k] = Sens[u, j, k, m]
    n_s, nH = 2 * H + 2, 4 * H
    k_po, k_Wy = nH * n_s, nH * n_s + H
    k_by = k_Wy + H
    n_t = 3 * H if squash else 2 * H                  # the rows one tanh covers before c_t
    z, c, h, tc = np.empty(nH), np.empty(H), np.empty(H), np.empty(H)
    eh, dzo, es, Kv, g = np.empty(H), np.empty(H), np.empty(H), np.empty((3, H)), np.empty(theta.shape[0])
    LY, LS = Y.shape[0], starts.shape[0]
    n = 0
    while n < K:
        n += 1
        any_end = False
        for m in range(M):
            # read: x_t, y_t and whether a unit ends at t
            p = fidx[m] % LY
            y, endb[m] = Y[p], E[p]
            if any_input:
                Sm[m, 0] = X[p]
            # forward: z = W s_t; i, f = σ(z_i, z_f); g; c_t = f c_{t-1} + i g; o = σ(z_o + p_o c_t); h_t = o tc
            for r in range(nH):
                acc = th[m, r * n_s] * Sm[m, 0]
                for j in range(1, n_s):
                    acc = acc + th[m, r * n_s + j] * Sm[m, j]
                z[r] = acc * 0.5 if r < 2 * H else acc * 1.0
            for r in range(n_t):
                z[r] = math.tanh(z[r]) * 0.5 + 0.5 if r < 2 * H else math.tanh(z[r]) * 1.0 + 0.0
            if no_f[m]:
                for j in range(H):
                    z[H + j] = 1.0
            for j in range(H):
                cp = Sm[m, 1 + H + j]
                c[j] = z[H + j] * cp + z[j] * z[2 * H + j]
                o = (z[3 * H + j] + th[m, k_po + j] * c[j]) * 0.5
                z[3 * H + j] = math.tanh(o) * 0.5 + 0.5
                tc[j] = math.tanh(c[j]) if squash else c[j]
                h[j] = z[3 * H + j] * tc[j]
            a = th[m, k_Wy] * h[0]
            for j in range(1, H):
                a = a + th[m, k_Wy + j] * h[j]
            pr = a + th[m, k_by]
            if sig_m[m]:
                pr = math.tanh(pr * 0.5) * 0.5 + 0.5
            pred[m] = pr
            # errors: ok = |pred - y| < tol; δ = (pred - y) out'; e_h = Wy δ; dz_o = e_h tc o(1 - o); e_c = e_h o tc'
            err = pr - y
            dl = abs(err)
            ok[m] = dl < tol[m]
            if dl != dl or err_max[m] != err_max[m]:
                err_max[m] = np.nan
            elif dl > err_max[m]:
                err_max[m] = dl
            d = (1.0 - pr) * pr * err if sig_m[m] else err
            for j in range(H):
                o = z[3 * H + j]
                eh[j] = th[m, k_Wy + j] * d
                dzo[j] = (1.0 - o) * o * tc[j] * eh[j]
                es[j] = eh[j] * o * (1.0 - tc[j] * tc[j]) if squash else eh[j] * o
            # sensitivities: ds_u,k = f ds_u,k + K_u s_k; K_i = g i(1 - i), K_f = c_{t-1} f(1 - f), K_g = i g'
            for j in range(H):
                i_, f_, g_ = z[j], z[H + j], z[2 * H + j]
                Kv[0, j] = (1.0 - i_) * i_ * g_
                Kv[1, j] = (1.0 - f_) * f_ * Sm[m, 1 + H + j]
                Kv[2, j] = (1.0 - g_ * g_) * i_ if squash else i_
                for u in range(3):
                    for k in range(n_s):
                        Ss[m, u, j, k] = Ss[m, u, j, k] * f_ + Kv[u, j] * Sm[m, k]
            # gradient: ∇W_u = e_c ds_u; ∇W_o = dz_o s_t; ∇p_o = dz_o c_t; ∇Wy = δ h_t; ∇by = δ
            for u in range(3):
                for j in range(H):
                    for k in range(n_s):
                        g[(u * H + j) * n_s + k] = es[j] * Ss[m, u, j, k]
            for j in range(H):
                for k in range(n_s):
                    g[(3 * H + j) * n_s + k] = dzo[j] * Sm[m, k]
                g[k_po + j] = dzo[j] * c[j]
                g[k_Wy + j] = d * h[j]
            g[k_by] = d
            # update: Δθ = momentum Δθ - lr ∇θ, θ += Δθ (training models); the next sources h_t, c_t
            lr, mom, tr = mode[1, m], mode[2, m], 1.0 if train[m] else 0.0
            for q in range(P):
                Dm[m, q] = Dm[m, q] * mom + g[q] * mk[m, q] * lr
                th[m, q] = th[m, q] + Dm[m, q] * tr
            for j in range(H):
                Sm[m, 1 + j], Sm[m, 1 + H + j] = h[j], c[j]
            # protocol: the stream moves on; it ends at an error, its units to reach, or the step budget
            fidx[m] += M
            slen[m] += 1
            if endb[m] and ok[m]:
                units[m] += 1
            done_u[m] = units[m] >= mode[0, m]
            if train[m]:
                left[m] -= 1
            out_b[m] = left[m] <= 0
            ends[m] = (not ok[m]) or done_u[m] or out_b[m]
            if any_nmsd and endb[m] and nmsd_m[m] and train[m]:
                _zero_state(Sm, Ss, m)
            any_end = any_end or ends[m]
        if not any_end:
            continue
        # stream ends: Python's when a model needs it (Online.look(), curve bins, budgets, refills), else here
        for m in range(M):
            if not ends[m]:
                continue
            tr = train[m]
            n_tr = streams[m] + (1 if tr else 0)
            if done_u[m] or (out_b[m] and tr) or not abs(pred[m]) < 1e150 or \
                    (n_tr >= next_stop[m] and (not tr or final[m] or n_tr >= max_streams[m])) or \
                    (any_delays and tr and starts[(fidx[m] - M) % LS] > refill_f[m]):
                _put_back(theta, D, S, Sens, th, Dm, Sm, Ss)
                return n, True
        for m in range(M):
            if not ends[m]:
                continue
            tr = train[m]
            untested = any_paper and tr and paper[m] and not done_u[m]
            if tr and streams[m] + 1 >= next_stop[m]:        # a power of two: the curve's bin closes before it
                nn, bits = streams[m] + 1, 0
                while nn >> bits:
                    bits += 1
                if nn & (nn - 1) == 0 and nn > 1:
                    curve_max[bits - 2, m], curve_run[bits - 2, m], curve_sum[bits - 2, m] = \
                        cur_max[m], cur_run[m], cur_sum[m]
                    cur_max[m], cur_run[m], cur_sum[m] = 0, 0, 0
                next_stop[m] = min(1 << bits, max_streams[m])
            if tr:
                streams[m] += 1
                steps[m] += slen[m]
                cur_run[m] = max(cur_run[m], slen[m])
                cur_sum[m] += slen[m]
                cur_max[m] = max(cur_max[m], units[m])
                if any_delays:
                    trf[m] = starts[(fidx[m] - M) % LS]
            out_b[m] = out_b[m] and tr
            train[m] = (not tr) or untested
            if tr:
                fidx[m] = test_f[m]
            if (not tr) or untested:
                fidx[m] = trf[m]
            units[m], slen[m] = 0, 0
            _zero_state(Sm, Ss, m)
            last_max[m], err_max[m] = err_max[m], 0.0
            for r in range(3):
                mode[r, m] = mode_train[r, m] if train[m] else mode_test[r, m]
    _put_back(theta, D, S, Sens, th, Dm, Sm, Ss)
    return n, False


_COMPILED = []


def compiled_kernel():
    """online_kernel() compiled by numba (once per process; numba caches it on disk)."""
    if not _COMPILED:
        import numba
        global _put_back, _zero_state
        _put_back = numba.njit(cache=True, nogil=True)(_put_back)
        _zero_state = numba.njit(cache=True, nogil=True)(_zero_state)
        _COMPILED.append(numba.njit(cache=True, nogil=True)(online_kernel))
    return _COMPILED[0]



def state_digest(keys, arrays):
    """SHA-256 (16 hex digits) of a checkpoint's running models' keys, in order, and its STATE arrays: a
    checkpoint whose contents do not match its keys (damaged, or edited) is refused."""
    h = hashlib.sha256(json.dumps(keys).encode())
    for k in STATE:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


CHECKPOINT_META = {"codes", "keys", "elapsed", "t", "rngs", "tape_states", "done", "digest"}


def read_checkpoint(path, H=None):
    """(meta, STATE arrays) of an online job's checkpoint, checked: every field and array there, each array with
    one column per running model and the shape of H cells (H None: whatever H its theta gives), no model both
    running and stopped, contents that match the digest. BadGrid (one line) otherwise."""
    def bad(why):
        return BadGrid(f"checkpoint {path} {why}: delete it to start its jobs over")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta, arrays = json.loads(str(z["meta"])), {k: z[k] for k in z.files if k != "meta"}
    except Exception as e:
        raise bad(f"cannot be read ({type(e).__name__})") from None
    if not isinstance(meta, dict) or CHECKPOINT_META - set(meta):
        raise bad("lacks fields of a checkpoint")
    missing = [k for k in STATE if k not in arrays]
    if missing:
        raise bad(f"lacks the array {missing[0]}")
    keys, done = meta["keys"], meta["done"]
    if not isinstance(keys, list) or not isinstance(done, dict) or len(set(keys)) != len(keys) or set(keys) & set(done):
        raise bad("lists a model twice, or as both running and stopped")
    P = arrays["theta"].shape[0] if arrays["theta"].ndim == 2 else -1
    if H is None:                                    # P = 4H (2H + 2) + 2H + 1
        H = next((h for h in range(1, 65) if sum(v for k, v in rtrl_layout(h).items() if k not in ("nH", "n_s"))
                  == P), 0)
    sz, M = rtrl_layout(H), len(keys)
    want = {"theta": (P, M), "D": (P, M), "S": (sz["n_s"], M), "Sens": (3, H, sz["n_s"], M)}
    want.update({k: (CURVE_BINS, M) for k in ("curve_max", "curve_run", "curve_sum")})
    if not H or P != sum(v for k, v in sz.items() if k not in ("nH", "n_s")):
        raise bad("holds weights of another network")
    wrong = [k for k in STATE if arrays[k].shape != want.get(k, (M,))]
    if wrong:
        raise bad(f"has an array {wrong[0]} of shape {arrays[wrong[0]].shape}, not {want.get(wrong[0], (M,))}")
    if meta["digest"] != state_digest(keys, arrays):
        raise bad("does not match its digest (damaged or edited)")
    return meta, {k: arrays[k] for k in STATE}


def online_grads(params, net, x, y):
    """Σ_t of the online learner's per-step gradients over one stream from the zero state with the weights held
    fixed (learning rate 0): x (L,) input spikes (0 or 1), y (L,) targets. Equal to truncated BPTT of the window
    (backward(truncate=True)); the gradient check compares the two."""
    H = params["Wh"].shape[0]
    spec = Spec("window", 0, params, np.asarray(y, np.float64), np.asarray(x, np.float64), lr=0.0, momentum=0.0,
                tol=np.inf, test_units=len(x) + 1, max_streams=1, max_steps=len(x) + 1, net=net, has_input=True)
    eng, total = Online(H, [spec]), 0.0
    for _ in range(len(x)):
        eng.run(1)
        total = total + eng.w["g"][:, 0]
    return unpack(total, net, H)


STOP = []   # signals a running online job received: it checkpoints and stops at its next chunk


def train_online(jobs, log=None, ckpt=None, every=None, chunk=2000, specs=None, other_code=False, engine="numpy",
                 starts=None):
    """Online learning of jobs [(cfg, seed)] of one network shape (each its own task, recipe and stream) through one
    time loop; returns ([result] in the order of jobs, seconds spent). With ckpt a path it resumes from it if it
    exists, writes it every `every` seconds (CHECKPOINT_EVERY) and when a signal arrives (STOP), then raises
    Interrupted (other_code: a checkpoint of another module version is taken, see Online.restore). log(str):
    progress lines. specs: the jobs' Specs, if not spec_of()'s (tests set weights by hand). engine: "numpy" or
    "numba" (online_kernel()). starts: {job key: state} of models that go on from a smaller budget's end."""
    every = CHECKPOINT_EVERY if every is None else every
    cfg0 = jobs[0][0]
    H = cfg0.hidden
    specs = specs or [spec_of(cfg, seed, start=(starts or {}).get(job_key(cfg, seed))) for cfg, seed in jobs]
    if ckpt and os.path.exists(ckpt):
        eng = Online.restore(ckpt, H, specs, cfg0.dtype, other_code, engine)
        if log:
            log(f"resuming {ckpt}: {len(eng.done)} of {len(specs)} models done, {eng.elapsed:.0f}s in")
    else:
        eng = Online(H, specs, cfg0.dtype, engine)
    t0, e0 = time.perf_counter(), eng.elapsed
    tasks, cells = (list(dict.fromkeys(f(c) for c, _ in jobs)) for f in (task_label, lambda c: cell_name(c.peep,
                                                                                                          c.forget)))
    what = (f"{len(jobs)} models: {tasks[0]}" + (f" ... {tasks[-1]} ({len(tasks)} settings)" if len(tasks) > 1 else "")
            + f" x {', '.join(cells)}")
    RUNNING.append(True)
    try:
        return _online_loop(eng, specs, t0, e0, (lambda s: log(f"{s}  [{what}]")) if log else None, ckpt, every,
                            chunk)
    finally:
        RUNNING.pop()


def _online_loop(eng, specs, t0, e0, log, ckpt, every, chunk):
    """train_online()'s loop: chunks of steps, Python's looks, checkpoints and progress lines."""
    last_ck = last_log = t0
    while eng.specs:
        eng.run(chunk)
        if eng.looked:
            eng.look()
        now = time.perf_counter()
        eng.elapsed = e0 + now - t0
        if ckpt and (STOP or now - last_ck >= every):
            eng.save(ckpt)
            last_ck = now
        if STOP:
            raise Interrupted(f"interrupted: checkpoint {ckpt} holds the job" if ckpt else
                              "interrupted: nothing written (an online job checkpoints only beside a journal)")
        if log and (now - last_log >= 10 or not eng.specs):
            last_log = now
            a = eng.a
            steps = int(a["steps"].sum() + sum(r["steps"] for r in eng.done.values()))
            longest = max([int(a["curve_max"].max(initial=0)), int(a["cur_max"].max(initial=0))]
                          + [r["longest_units"] for r in eng.done.values()])
            # the loop runs until its last model stops: each model's steps left by its step budget and by its stream
            # budget at its streams' mean length so far (tests included), the most of them at the loop's rate
            t = max(eng.t, 1)
            by_steps = np.array([sp.max_steps for sp in eng.specs]) - a["steps"] - a["slen"]
            by_streams = (np.array([sp.max_streams for sp in eng.specs]) - a["streams"]) * t / np.maximum(
                a["streams"], 1)
            eta = eng.elapsed / t * float(np.minimum(by_steps, by_streams).max(initial=0))
            log(f"online: {int(a['streams'].sum()) + sum(r['streams'] for r in eng.done.values())} streams, "
                f"{steps / 1e6:.2f} M steps, longest {longest} units, {len(eng.done)}/{len(specs)} models done "
                f"({sum(r['outcome'] == 'passed' for r in eng.done.values())} passed)  {eng.elapsed:.0f}s  "
                f"eta {eta:.0f}s (the last model's budget at its mean stream length so far)")
    if ckpt:
        eng.save(ckpt)
    return [eng.done[sp.key] for sp in specs], eng.elapsed


# ----------------------------------------------------------------------------------------------------------------
# Gradient check
# ----------------------------------------------------------------------------------------------------------------

GRADCHECK_TOL = 1e-6
GRADCHECK_NETS = [Net(peep, forget, squash, "linear" if squash else "sigmoid")
                  for squash in (True, False) for forget in (True, False) for peep in (True, False)]


def gradcheck(net, seed=0, T=12, H=4, B=3, D_min=2, D_max=4, eps=1e-3):
    """Max relative error |a - n| / max(|a| + |n|, 1e-8) between backward() (a) and a five-point central
    difference (n, truncation error O(eps^4)) of every entry of every parameter, in float64, over a window that
    starts from a carried nonzero state (h, c). Returns {name: error}."""
    rng = rng_for(STREAM_INIT, seed)
    params = init_params(rng, H, net.peep, forget=net.forget)
    for k in PEEPHOLES:  # larger peepholes, so their gradient paths carry weight well above round-off
        if k in params:
            params[k] *= 5
    state = (rng.uniform(-0.5, 0.5, (H, B)), rng.standard_normal((H, B)))
    batch = msd_batch(rng_for(STREAM_TRAIN, seed), B, T, D_min, D_max)
    buf = buffers_for(params, batch.x, net)
    _, grads, _ = loss_and_grads(params, batch, buf, state)

    def loss():
        err = forward(params, batch.x, buf, state)[0] - batch.y
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


ONLINE_TOL = 1e-10


def online_check(net, seed=0, L=30, H=3):
    """{name: max |a - b| / max |b|} between the online learner's per-step gradients summed over a window with the
    weights held fixed (a, online_grads()) and truncated BPTT of the window (b, backward(truncate=True)): L steps
    from the zero state, random input spikes and targets, H cells (the sensitivities are per cell), peepholes
    x5 as in gradcheck()."""
    params = init_params(rng_for(STREAM_INIT, seed), H, net.peep, forget=net.forget)
    for k in PEEPHOLES:
        if k in params:
            params[k] *= 5
    rng = rng_for(STREAM_TRAIN, seed)
    x, y = (rng.random(L) < 0.3).astype(np.float64), rng.random(L)
    a = online_grads(params, net, x, y)
    b = loss_and_grads(params, Stream(x[:, None, None], y[:, None], None), make_buffers(L, 1, H, net), truncate=True)[1]
    return {k: float(np.max(np.abs(a[k] - b[k])) / max(np.max(np.abs(b[k])), 1e-300)) for k in b}


def net_label(net):
    return f"{cell_name(net.peep, net.forget):11s} {'seed ' if net.squash else 'paper'} {net.out:7s}"


# ----------------------------------------------------------------------------------------------------------------
# Runs and grids: one model, many models on a pool or a dask cluster, a durable journal
# ----------------------------------------------------------------------------------------------------------------

CELLS = {"peephole": (True, True), "vanilla": (False, True), "lstm1997": (False, False), "peephole-nf": (True, False)}


def run_one(cfg, seed, log=None, on_eval=None):
    """Train one model; returns a run record, the trained parameters and the best checkpoint's."""
    t0 = time.perf_counter()
    tr = train(cfg, seed, log=log, on_eval=on_eval)
    last = tr.history[-1]
    run = {"seed": seed, "variant": cell_name(cfg.peep, cfg.forget), "task": cfg.task, "final": tr.final,
           "best": tr.best, "seen": last["seen"], "steps": last["steps"], "wall_time": time.perf_counter() - t0,
           "history": tr.history}
    return run, tr.params, tr.best_params


def code_version():
    """The first 16 hex digits of the SHA-256 of the module's file as it is now on disk."""
    with open(os.path.abspath(__file__), "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


CODE = code_version()  # the code this process runs: read at import, so a later edit of the file does not change it


def grid_job(cfg, seeds, online=None):
    """A worker's task, self-contained (a Config and seeds in, plain data out): the models of seeds trained through
    one time loop (train_many; an online job: online_job), and for each ("done", run, params, best_params, code)
    or, for a diverged model, ("diverged", message, code). cfg may be a list, one per seed (an online job); online:
    {"ckpt": path or None, "every": seconds between checkpoints, "log": progress lines or not, "append": a
    checkpoint of another module version is taken}."""
    if isinstance(cfg, list) or cfg.learner == "rtrl":
        o = online or {}
        return online_job(cfg if isinstance(cfg, list) else [cfg] * len(seeds), seeds, o.get("ckpt"),
                          print if o.get("log") else None, o.get("every"), o.get("append", False),
                          o.get("engine", "numpy"), o.get("starts"))
    t0 = time.perf_counter()
    trained = train_many(cfg, seeds)
    wall, code, out = (time.perf_counter() - t0) / len(seeds), CODE, []
    for seed, tr in zip(seeds, trained):
        if isinstance(tr, str):
            out.append(("diverged", tr, code))
            continue
        last = tr.history[-1]
        run = {"seed": seed, "variant": cell_name(cfg.peep, cfg.forget), "task": cfg.task, "final": tr.final,
               "best": tr.best, "seen": last["seen"], "steps": last["steps"], "wall_time": wall,
               "models_per_process": len(seeds), "history": tr.history}
        out.append(("done", run, tr.params, tr.best_params, code))
    return out


def second_test(params, cfg):
    """A passed MSD-stream model (task delays) on a second held-out stream of test_units intervals, drawn from test
    seed test_seed + 1 (one stream of random intervals can pass a network another fails): the units it ran
    error-free and its largest |pred - y| up to its first error (or over the whole stream)."""
    s = stream_test(replace(cfg, test_seed=cfg.test_seed + 1), cfg.test_units)
    err = np.abs(free_run(params, net_of(cfg), s.x) - s.y[:, 0])
    wrong = np.flatnonzero(~(err < TASKS[cfg.task].tol))        # NaN is wrong
    last = int(wrong[0]) if wrong.size else len(err) - 1         # the test's last step
    units = int(s.ends[:last, 0].sum()) if wrong.size else int(s.ends[:, 0].sum())
    return {"test_seed": cfg.test_seed + 1, "run_units": units, "max_error": float(np.max(err[:last + 1])),
            "passed": units >= cfg.test_units}


def online_job(cfgs, seeds, ckpt=None, log=None, every=None, other_code=False, engine="numpy", starts=None):
    """grid_job() of an online job: train_online(), then each model's final weights re-scored as train_many()
    scores its models (evaluate() on the test stream, PFG's long run included), and a passed MSD-stream model
    on a second test stream (second_test()); the learner's record is run["online"] (train_online()'s result
    without the weights)."""
    results, elapsed = train_online(list(zip(cfgs, seeds)), log, ckpt, every, other_code=other_code, engine=engine,
                                    starts=starts)
    return [online_result(cfg, seed, r, elapsed / len(seeds), len(seeds))
            for cfg, seed, r in zip(cfgs, seeds, results)]


def online_result(cfg, seed, r, wall, models):
    """grid_job()'s result of one stopped online model (r: Online.result()): its final weights scored as
    train_many() scores a model, a passed MSD-stream model also on a second test stream."""
    if r["outcome"] == "diverged":
        return ("diverged", f"seed {seed}: non-finite weights after {r['streams']} training streams ({r['steps']} "
                            "steps)", CODE)
    final = evaluate(r["params"], test_set(cfg, TASKS[cfg.task].long * cfg.test_units), net_of(cfg), cfg)
    online = {k: v for k, v in r.items() if k not in ("key", "seed", "params")}
    if cfg.task == "delays" and r["outcome"] == "passed":
        online["second_test"] = second_test(r["params"], cfg)
    run = {"seed": seed, "variant": cell_name(cfg.peep, cfg.forget), "task": cfg.task, "final": final,
           "best": {"iter": None, **final}, "seen": r["streams"], "steps": r["steps"], "wall_time": wall,
           "models_per_process": models, "online": online, "history": []}
    return ("done", run, r["params"], r["params"], CODE)


RUNNING = []   # non-empty while this process runs an online job: a signal then asks it to checkpoint (STOP)


def on_stop_signal(signum, frame):
    """SIGTERM and SIGINT: an online job checkpoints at its next chunk and stops; anything else stops now."""
    STOP.append(signum)
    if not RUNNING:
        raise KeyboardInterrupt


def _worker_init():
    """Workers leave Ctrl-C to the main process, and die with it even when it is SIGKILLed (Linux); an online job
    checkpoints first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: STOP.append(signum) if RUNNING else os._exit(128 + signum))
    IN_WORKER.append(True)
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)       # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


IN_WORKER = []


def _call(batch):
    ks, cfg, seeds, online = batch
    try:
        return ks, grid_job(cfg, seeds, online)
    except Interrupted:
        if IN_WORKER:                                   # the checkpoint is written; the pool is being stopped
            os._exit(1)
        raise


def _worker(conn):
    """A worker process: batches from its own pipe until None, each answered on it with ("done", _call()'s
    result) or ("error", the exception). Its own pipe, not a queue shared with the other workers: no lock that a
    stopping pool could leave held (multiprocessing.Pool's terminate() could, and a finished grid then hung)."""
    _worker_init()
    while True:
        try:
            batch = conn.recv()
        except EOFError:                                # the main process is gone
            return
        if batch is None:
            return
        try:
            answer = ("done", _call(batch))
        except Exception as e:
            answer = ("error", e)
        try:
            conn.send(answer)
        except Exception as e:                          # an exception that does not pickle: its words
            conn.send(("error", RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}"[:300])))


def _pool(batches, workers):
    """Yield _call()'s results for batches as they finish, on `workers` spawned processes (_worker). Leaving
    early (an exception, an interrupt, close()) sends SIGTERM to the busy workers (an online job checkpoints, then
    exits) and waits for every worker: no orphans. A worker that dies without answering is a BadGrid."""
    from multiprocessing.connection import wait
    ctx, todo, idle, busy, procs = multiprocessing.get_context("spawn"), list(batches)[::-1], [], {}, {}
    try:
        for _ in range(workers):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(theirs,), daemon=True)
            p.start()
            theirs.close()
            procs[mine] = p
            idle.append(mine)
        while todo or busy:
            while todo and idle:
                conn = idle.pop()
                conn.send(todo.pop())
                busy[conn] = True
            ready = wait(list(busy) + [procs[c].sentinel for c in busy])
            for conn in [c for c in busy if c in ready or procs[c].sentinel in ready]:
                try:
                    kind, res = conn.recv()
                except EOFError:
                    procs[conn].join(5)
                    raise BadGrid(f"a worker process died (exit code {procs[conn].exitcode}) before it finished its "
                                  "jobs: the finished runs are in the journal; run the same command with --resume") \
                        from None
                del busy[conn]
                idle.append(conn)
                if kind == "error":
                    raise res
                yield res
    finally:
        for conn, p in procs.items():
            if conn in busy:
                p.terminate()                           # SIGTERM: an online job checkpoints first
            else:
                try:
                    conn.send(None)
                except OSError:
                    pass
        for conn, p in procs.items():
            p.join()
            conn.close()


NO_WORKER_WAIT = 120.0   # seconds a grid on a dask cluster waits for a worker before it stops


def execute(batches, workers=1, scheduler=None):
    """Yield (ks, grid_job results) for batches [(ks, cfg, seeds, online)] as they finish: in this process
    (workers == 1), on spawned worker processes (_pool), or on the dask.distributed cluster at `scheduler`. Leaving
    early (an exception, an interrupt, close()) stops the pool's workers or cancels the cluster's futures: no
    orphans."""
    if scheduler:
        from dask.distributed import Client, as_completed as completed     # optional: imported for this flag only
        # the job by its module's name, not this script's __main__: dask then sends it by reference, each worker
        # runs the module it imports itself, and run_grid() compares that module's hash with this one's
        job = importlib.import_module("timing_counting_spikes").grid_job
        client = Client(scheduler, timeout="20s")
        futures = {}
        try:
            cluster_can_run(client, scheduler)
            futures = {client.submit(job, cfg, seeds, o, pure=False): ks for ks, cfg, seeds, o in batches}
            done, alone = completed(futures), None          # alone: since when the cluster has had no worker
            while not done.is_empty():
                if not done.has_ready():
                    time.sleep(0.2)
                    if client.scheduler_info(n_workers=1)["workers"]:
                        alone = None
                    elif time.monotonic() - (alone := alone or time.monotonic()) > NO_WORKER_WAIT:
                        raise BadGrid(f"no dask worker for {NO_WORKER_WAIT:.0f} s: start workers and run the same "
                                      "command with --resume (the finished runs are in the journal)")
                    continue
                fut = next(done)
                try:
                    res = fut.result()
                except Exception as e:                 # a worker without the module, or a job that failed there
                    why = " ".join(str(e).split())[:160]
                    raise BadGrid(f"a dask worker could not run a job ({type(e).__name__}: {why}); workers need this "
                                  "module importable as timing_counting_spikes") from None
                yield futures[fut], res
        finally:
            client.cancel(list(futures))
            client.close()
    elif workers == 1:
        for batch in batches:
            yield _call(batch)
    else:
        yield from _pool(batches, workers)


def cluster_can_run(client, address):
    """Before a job is sent: the dask scheduler at address and every worker it has now import this module as
    timing_counting_spikes, the workers the same version (the scheduler unpickles the jobs' configs, the workers
    run them). BadGrid naming the process that cannot, in one line."""
    # a lambda travels by value: it runs where the module may be missing, and says so
    probe = lambda: __import__("importlib").import_module("timing_counting_spikes").CODE     # noqa: E731
    try:
        client.run_on_scheduler(probe)
    except ImportError:
        raise BadGrid(f"the dask scheduler at {address} cannot import timing_counting_spikes (it unpickles the jobs): "
                      "start it in a checkout of this repository, or with it on PYTHONPATH") from None
    codes = client.run(probe, on_error="return")
    lacking = sorted(w for w, c in codes.items() if isinstance(c, BaseException))
    other = sorted(w for w, c in codes.items() if not isinstance(c, BaseException) and c != CODE)
    if lacking:
        raise BadGrid(f"dask worker {lacking[0]}" + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else "")
                      + " cannot import timing_counting_spikes: start workers in a checkout of this repository, or "
                        "with it on PYTHONPATH")
    if other:
        raise BadGrid(f"dask worker {other[0]} runs timing_counting_spikes {codes[other[0]]}, this process {CODE}: "
                      "install the same module everywhere")


class BadGrid(ValueError):
    """A grid file, a journal or a resume that cannot be used; the message is one line."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped a grid; the message says what is saved and how to resume."""


def job_key(cfg, seed):
    return json.dumps([config_dict(cfg), seed], sort_keys=True)


# The fields every journal line of a kind holds (a run's "run" holds final and best metrics too).
JOURNAL_FIELDS = {"header": {"grid_hash", "code", "n_jobs"},
                  "run": {"key", "config", "seed", "cell", "run", "code", "params", "best_params"},
                  "diverged": {"key", "config", "seed", "cell", "message", "code"}}


def read_journal(path):
    """-> (headers, records) of a JSON Lines journal and the byte length of its complete records. A last line
    without its newline, or one that does not parse, is a run cut off by a kill: it is dropped. A bad line
    elsewhere, a record without the fields of its kind (JOURNAL_FIELDS) or a second record of one job is a
    BadGrid naming the line."""
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    headers, records, good, seen = [], [], 0, {}
    for n, line in enumerate(lines):
        if n == len(lines) - 1:                         # after the last newline: empty, or a truncated record
            break
        try:
            rec = json.loads(line)
            kind = rec["kind"]
        except (ValueError, KeyError, TypeError):
            if n == len(lines) - 2 and not lines[-1]:
                break                                   # the last complete line is garbled: cut off mid-write
            raise BadGrid(f"{path}: line {n + 1} is not a journal record") from None
        missing = JOURNAL_FIELDS[kind] - set(rec) if kind in JOURNAL_FIELDS else None
        if missing is None or missing or (kind == "run" and not (isinstance(rec["run"], dict)
                                                                 and {"final", "best"} <= set(rec["run"]))):
            what = f"a {kind!r} record without {', '.join(sorted(missing))}" if missing else \
                f"a record of unknown kind {kind!r}" if missing is None else "a run without final and best metrics"
            raise BadGrid(f"{path}: line {n + 1} is {what}")
        if kind != "header":
            if rec["key"] in seen:
                raise BadGrid(f"{path}: line {n + 1} records the job of line {seen[rec['key']]} again")
            seen[rec["key"]] = n + 1
        (headers if kind == "header" else records).append(rec)
        good += len(line) + 1
    if not headers:
        raise BadGrid(f"{path}: no header line: not a grid journal")
    return headers, records, good


class Journal:
    """An append-only JSON Lines file: a header line per grid segment, then one record per finished run, each
    flushed and fsynced the moment it is written."""

    def __init__(self, path, header, resume=False, append=False):
        self.path, self.done, self.dropped = path, {}, False
        if os.path.exists(path):
            if not (resume or append):
                raise BadGrid(f"--out {path} exists: --resume to continue it, or choose a new file")
            headers, records, good = read_journal(path)
            last = headers[-1]
            same = (last.get("grid_hash"), last.get("code")) == (header["grid_hash"], header["code"])
            if same and last.get("engine") != header.get("engine"):     # another engine: other bits
                if not append:
                    raise BadGrid(f"--out {path} was trained by the {last.get('engine') or 'numpy'} engine: --engine "
                                  f"{last.get('engine') or 'numpy'} to resume it, or --append to go on with "
                                  f"{header.get('engine')}")
                same = False
            if not same and not append:
                raise BadGrid(f"--out {path} holds another grid or code version (grid {last.get('grid_hash')}, code "
                              f"{last.get('code')}; this command: grid {header['grid_hash']}, code {header['code']})"
                              ": use a new --out, or --append to add to it")
            self.done = {r["key"]: r for r in records}
            with open(path, "rb+") as fh:
                self.dropped = fh.seek(0, 2) != good
                fh.truncate(good)
            if not same:
                self.write(header)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.write(header)

    def write(self, record):
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def journal_record(cfg, seed, res):
    """The journal line of one finished job (parameters as lists: any model of a grid can be rebuilt)."""
    rec = {"key": job_key(cfg, seed), "config": config_dict(cfg), "seed": seed, "cell": cell_name(cfg.peep, cfg.forget)}
    if res[0] == "diverged":
        return {"kind": "diverged", **rec, "message": res[1], "code": res[2]}
    _, run, params, best, code = res
    return {"kind": "run", **rec, "run": run, "code": code, "params": {k: v.tolist() for k, v in params.items()},
            "best_params": {k: v.tolist() for k, v in best.items()}}


def batch_jobs(todo, models=None):
    """Group [(k, cfg, seed)] into batches [(ks, cfg, seeds, None)] of jobs that differ only in their seed, at most
    `models` in a batch (None: MODELS_PER_PROCESS(cfg)), in order of their first job."""
    groups = {}
    for k, cfg, seed in todo:
        groups.setdefault(cfg, []).append((k, seed))
    batches = []
    for cfg, ks in groups.items():
        size = models or MODELS_PER_PROCESS(cfg)
        for j in range(0, len(ks), size):
            part = ks[j:j + size]
            batches.append(([k for k, _ in part], cfg, [s for _, s in part], None))
    return sorted(batches, key=lambda b: b[0][0])


ONLINE_MODELS = 256   # models of one online job (one time loop), by default: see bench/bench_online.py


def online_batches(jobs, done, models=None, ckpt_dir=None, every=None, log=False, append=False, engine="numpy",
                   starts=None):
    """Online jobs [(k, cfg, seed)] of the whole grid (done ones included, so a resumed grid forms the same
    batches) grouped by architecture and H: models of different cells, tasks, recipes and output units share a
    time loop. Returns the batches [(ks, cfgs, seeds, grid_job's online options)] that hold a job not in `done`
    (a set of k); each checkpoints to ckpt_dir/HASH.npz, HASH naming its jobs. A checkpoint already in ckpt_dir
    is resumed as the batch it holds, whatever `models` is now (held_batches()); the other jobs form new ones.
    starts: {job key: the state a model goes on from} (earlier_budget())."""
    held = held_batches(jobs, done, ckpt_dir) if ckpt_dir else {}
    taken = {k for ks in held.values() for k in ks}
    groups = {}
    for k, cfg, seed in jobs:
        if k not in taken:
            groups.setdefault((cfg.arch, cfg.hidden, cfg.dtype), []).append((k, cfg, seed))
    parts = [[j for j in jobs if j[0] in ks] for ks in held.values()]
    for part in groups.values():
        size = models or ONLINE_MODELS
        parts += [part[j:j + size] for j in range(0, len(part), size)]
    paths = {min(ks): path for path, ks in held.items()}
    batches = []
    for b in parts:
        if all(k in done for k, _, _ in b):
            continue
        name = hashlib.sha256("\n".join(job_key(c, s) for _, c, s in b).encode()).hexdigest()[:16]
        path = paths.get(min(k for k, _, _ in b)) or (os.path.join(ckpt_dir, name + ".npz") if ckpt_dir else None)
        mine = {job_key(c, s): (starts or {})[job_key(c, s)] for _, c, s in b if job_key(c, s) in (starts or {})}
        batches.append(([k for k, _, _ in b], [c for _, c, _ in b], [s for _, _, s in b],
                        {"ckpt": path, "every": every, "log": log, "append": append, "engine": engine,
                         "starts": mine}))
    return sorted(batches, key=lambda b: b[0][0])


def held_batches(jobs, done, ckpt_dir):
    """{checkpoint path: set of job indices} of the checkpoints in ckpt_dir that hold running jobs of this grid.
    A checkpoint whose jobs are all in the journal is stale and deleted, as are temporary files a kill left; one
    that holds a job this grid does not have, or one another checkpoint holds too, is a BadGrid."""
    index = {job_key(c, s): k for k, c, s in jobs}
    held, owner = {}, {}
    for name in os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []:
        path = os.path.join(ckpt_dir, name)
        if name.startswith(".tmp-"):
            os.unlink(path)
            continue
        meta = read_checkpoint(path)[0]
        keys = meta["keys"] + list(meta["done"])
        if any(key not in index for key in keys):
            raise BadGrid(f"checkpoint {path} holds jobs this grid does not have: use the grid it came from, or "
                          "delete it to start its jobs over")
        ks = {index[key] for key in keys}
        if ks <= done:
            os.unlink(path)
            continue
        for k in ks:
            if k in owner:
                raise BadGrid(f"checkpoints {owner[k]} and {path} hold the same job: delete one")
            owner[k] = path
        held[path] = ks
    return held


# Models trained through one time loop, by default: many when one model's step is all call overhead (one cell, or
# B = 1), one otherwise (at H = 8, B = 32 a batch of models is no faster than the models one by one).
MODELS_PER_PROCESS = lambda cfg: 16 if cfg.hidden * (1 if cfg.task in GENERATION else cfg.batch) <= 16 else 1


BUDGET = ("max_streams", "max_steps")     # an online model's budget: what --continue-from may raise


def earlier_budget(path, jobs):
    """What a journal of the same online jobs at a smaller budget (--continue-from path) gives each of jobs, by
    index: ("start", state) for a model that stopped at that budget and kept its state (Online.state_of()): it goes
    on from there; ("carry", record) for one that passed or diverged within it: it stops alike within any larger
    budget. Other jobs start over. BadGrid if a job ran a larger budget there."""
    try:
        records = read_journal(path)[1]
    except OSError:
        raise BadGrid(f"--continue-from {path}: no such journal") from None
    key = lambda config, seed: json.dumps([{k: v for k, v in config.items() if k not in BUDGET}, seed], sort_keys=True)
    by = {key(r["config"], r["seed"]): r for r in records}
    out = {}
    for k, (cfg, seed) in enumerate(jobs):
        r = by.get(key(json.loads(json.dumps(config_dict(cfg))), seed)) if cfg.learner == "rtrl" else None
        if r is None:
            continue
        if any(r["config"][b] > getattr(cfg, b) for b in BUDGET):
            raise BadGrid(f"--continue-from {path}: {setting_label(cfg)} {cell_name(cfg.peep, cfg.forget)} seed "
                          f"{seed} ran a larger budget there than this grid gives it")
        o = r["run"]["online"] if r["kind"] == "run" else None
        if o is None or o["outcome"] == "passed":
            out[k] = ("carry", r)
        elif o.get("state"):
            out[k] = ("start", o["state"])
    return out


def run_grid(jobs, workers=1, out=None, resume=False, append=False, scheduler=None, grid=None, log=print,
             quiet=False, models=None, checkpoint_every=None, engine="numpy", continue_from=None):
    """Train jobs [(cfg, seed)] and return [grid_job result or journal record] in the input order. Jobs that
    differ only in their seed train together, `models` at a time (batch_jobs); each model's result is bit-identical
    to training it alone.

    With out a .jsonl file every finished run (or diverged model) is appended to the journal at once; with resume
    the jobs it already holds are skipped, and a diverged model does not stop the others. Without a journal the
    first diverged model raises Diverged. A line per finished run (unless quiet) with done/total and the ETA.
    SIGINT and SIGTERM raise Interrupted after the workers are stopped. continue_from: a journal of the same
    online jobs at a smaller budget (earlier_budget()): its models go on from where they stopped, or are carried
    over as they stopped."""
    n = len(jobs)
    results = [None] * n
    journal = None
    given = earlier_budget(continue_from, jobs) if continue_from else {}
    if out and out.endswith(".jsonl"):
        keys = sorted(job_key(cfg, seed) for cfg, seed in jobs)
        grid_hash = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        header = {"kind": "header", "grid": grid, "grid_hash": grid_hash, "code": CODE, "n_jobs": n,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), **versions()}
        if any(cfg.learner == "rtrl" for cfg, _ in jobs):
            header["engine"] = engine
        journal = Journal(out, header, resume, append)
        for k, (cfg, seed) in enumerate(jobs):
            results[k] = journal.done.get(job_key(cfg, seed))
        if journal.done:
            log(f"resuming {out}: {sum(r is not None for r in results)} of {n} runs done"
                + ("; dropped a truncated last record" if journal.dropped else ""))
    for k, (how, r) in given.items():
        if how == "carry" and results[k] is None:        # it passed or diverged within the smaller budget
            cfg, seed = jobs[k]
            results[k] = {**r, "key": job_key(cfg, seed), "config": json.loads(json.dumps(config_dict(cfg))),
                          "carried_from": os.path.basename(continue_from)}
            if journal:
                journal.write(results[k])
    starts = {job_key(*jobs[k]): st for k, (how, st) in given.items() if how == "start"}
    todo = [(k, cfg, seed) for k, (cfg, seed) in enumerate(jobs) if results[k] is None]
    online = [(k, cfg, seed) for k, (cfg, seed) in enumerate(jobs) if cfg.learner == "rtrl"]
    batches = batch_jobs([j for j in todo if j[1].learner != "rtrl"], models) + \
        online_batches(online, {k for k in range(n) if results[k] is not None}, models,
                       os.path.abspath(out) + ".ckpt" if journal else None, checkpoint_every, not quiet, append,
                       engine, starts)
    ckpts = {tuple(b[0]): b[3]["ckpt"] for b in batches if b[3]}
    t0, n_done, n_todo = time.perf_counter(), n - len(todo), len(todo)
    here = CODE
    try:
        i = 0
        for ks, batch in execute(batches, min(workers, max(1, len(batches))), scheduler):
            for k, res in zip(ks, batch):
                cfg, seed = jobs[k]
                if results[k] is not None:                  # an online batch retrained a run the journal holds
                    continue
                if res[-1] != here:
                    raise BadGrid(f"a worker ran code {res[-1]}, this process {here}: install the same module "
                                  "everywhere")
                if res[0] == "diverged" and journal is None:
                    raise Diverged(res[1])
                results[k] = journal_record(cfg, seed, res) if journal else res
                if journal:
                    journal.write(results[k])
                n_done, i = n_done + 1, i + 1
                el = time.perf_counter() - t0
                if not quiet:
                    what = (models_line(res[1]) + f"  ({res[1]['wall_time']:.1f}s)" if res[0] == "done"
                            else f"DIVERGED: {res[1]}")
                    log(f"[{n_done}/{n}] {setting_label(cfg)} {cell_name(cfg.peep, cfg.forget):11s} seed {seed:3d}  "
                        f"{what}  elapsed {el:.0f}s  eta {el / i * (n_todo - i):.0f}s")
            if ckpts.get(tuple(ks)) and os.path.exists(ckpts[tuple(ks)]):
                os.unlink(ckpts[tuple(ks)])                # its runs are in the journal now
    except (KeyboardInterrupt, Interrupted):
        saved = f"{n_done} of {n} runs are in {out}" + (f" and the online jobs' checkpoints in {out}.ckpt" if any(
            ckpts.values()) else "") + "; resume with the same command and --resume" if journal else \
            f"{n_done} of {n} runs were done and nothing is written (--out X.jsonl keeps finished runs)"
        raise Interrupted(f"interrupted: {saved}") from None
    return results


def run_many(cfgs_seeds, workers, log=print):
    """run_grid() without a journal: [(run, params, best_params)] in the input order; raises Diverged naming the
    first failed model."""
    return [res[1:4] for res in run_grid(cfgs_seeds, workers, log=log)]


def task_label(cfg):
    """The task and its setting in a few words: 'msd T=150 D=30-60', 'delays F=49 I=0,1', 'pfg f_cos F=10'."""
    if cfg.task == "msd":
        return f"msd T={cfg.T} D={cfg.D_min}-{cfg.D_max}"
    if cfg.task == "delays":
        return f"delays F={cfg.F} I={','.join(map(str, cfg.I))}"
    return f"{cfg.task}{' f_' + cfg.wave if cfg.task == 'pfg' else ''} F={cfg.F}"


def setting_label(cfg):
    """A job's task setting, training window and network, and any recipe value off its default, for progress lines
    and report rows."""
    w = f" w={'-'.join(map(str, dict.fromkeys(cfg.window)))}" if cfg.window else ""
    default = Config(task=cfg.task, arch=cfg.arch, init=cfg.init, forget=cfg.forget, learner=cfg.learner,
                     window=cfg.window if cfg.learner == "rtrl" else None)
    off = "".join(f" {k}={getattr(cfg, k)}" for k in ("batch", "iters", "lr", "lr_decay_factor", "lr_decay_every",
                                                        "clip", "peep_scale", "init_noise") + RTRL_ONLY
                  if getattr(cfg, k) != getattr(default, k))
    learner = " rtrl" if cfg.learner == "rtrl" else ""
    return f"{task_label(cfg)}{w} {cfg.arch}/{cfg.init} H={cfg.hidden}{learner}{off}"


def expand_setting(setting, where):
    """One grid-file setting {flag: value or [values]} -> argv lists, one per combination of the listed values."""
    if not isinstance(setting, dict) or not setting:
        raise BadGrid(f"{where}: a setting is a non-empty object of flags")
    keys = list(setting)
    options = [v if isinstance(v, list) else [v] for v in setting.values()]
    if any(not o for o in options):
        raise BadGrid(f"{where}: an empty list of values")
    argvs = []
    for combo in itertools.product(*options):
        argv = []
        for k, v in zip(keys, combo):
            flag = "--" + k.replace("_", "-")
            if isinstance(v, bool):
                if not v:
                    raise BadGrid(f"{where}: {k}: false is the default; leave it out")
                argv.append(flag)
            elif isinstance(v, (int, float, str)):
                argv += [flag, str(v)]
            else:
                raise BadGrid(f"{where}: {k}: values are numbers, strings, true, or lists of them")
        argvs.append(argv)
    return argvs


def grid_parser(where):
    """The recipe parser, its errors raised as BadGrid naming the setting."""
    p = recipe_parser("")

    def error(msg):
        raise BadGrid(f"{where}: {msg}")

    p.error = error
    return p


def cell_jobs(a, cells, seeds, where):
    """[(cfg, seed)] of parsed recipe flags a for each seed and cell (seed-major: pairs finish together)."""
    cfgs = []
    for cell in cells:
        peep, forget = CELLS[cell]
        b = argparse.Namespace(**{**vars(a), "forget": forget})
        problem = check_recipe(b)
        if problem:
            raise BadGrid(f"{where}, cell {cell}: {problem}")
        cfgs.append(config_from_args(b, peep))
    return [(cfg, seed) for seed in seeds for cfg in cfgs]


def parse_cells(spec):
    cells = [c.strip() for c in spec.split(",")]
    bad = [c for c in cells if c not in CELLS]
    if bad or len(set(cells)) != len(cells):
        raise ValueError(f"malformed --cells {spec!r}: a comma list of distinct names from {', '.join(CELLS)}")
    return cells


GRID_KEYS = {"note", "base", "settings", "cells", "seeds"}


def load_grid(path):
    """-> (grid, jobs) from a JSON grid file: {"base": {flag: value}, "settings": [{flag: value or [values]}],
    "cells": [names], "seeds": "0-19", "note": text}; a setting's own "cells" list replaces the grid's for it.
    Every setting x cell is parsed and checked as its command-line flags would be, before anything trains;
    BadGrid with a one-line reason otherwise."""
    try:
        with open(path) as fh:
            grid = json.load(fh)
    except FileNotFoundError:
        raise BadGrid(f"--grid {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise BadGrid(f"--grid {path}: not JSON ({type(e).__name__})") from None
    if not isinstance(grid, dict) or set(grid) - GRID_KEYS or not {"settings", "cells", "seeds"} <= set(grid):
        raise BadGrid(f"--grid {path}: an object with settings, cells, seeds (and optional base, note)")
    settings, base = grid["settings"], grid.get("base", {})
    if not isinstance(settings, list) or not settings or not isinstance(base, dict):
        raise BadGrid(f"--grid {path}: settings is a non-empty list, base an object")
    if not isinstance(grid["cells"], list) or not isinstance(grid["seeds"], str):
        raise BadGrid(f"--grid {path}: cells is a list of names, seeds a string such as \"0-19\"")
    try:
        cells = parse_cells(",".join(map(str, grid["cells"])))
        seeds = parse_seeds(grid["seeds"])
    except ValueError as e:
        raise BadGrid(f"--grid {path}: {e}") from None
    jobs = []
    for i, setting in enumerate(settings):
        where = f"--grid {path}: settings[{i}]"
        if isinstance(setting, dict) and {"no_forget", "forget", "peep", "no_peep"} & {*setting, *base}:
            raise BadGrid(f"{where}: cells set the peepholes and the forget gate, not settings")
        mine = cells
        if isinstance(setting, dict) and "cells" in setting:          # this setting's cells, not the grid's
            setting = dict(setting)
            own = setting.pop("cells")
            if not isinstance(own, list):
                raise BadGrid(f"{where}: cells is a list of names")
            try:
                mine = parse_cells(",".join(map(str, own)))
            except ValueError as e:
                raise BadGrid(f"{where}: {e}") from None
        for argv in expand_setting({**base, **setting} if isinstance(setting, dict) else setting, where):
            jobs += cell_jobs(grid_parser(where).parse_args(argv), mine, seeds, where)
    keys = [job_key(c, s) for c, s in jobs]
    if len(set(keys)) != len(keys):
        raise BadGrid(f"--grid {path}: two settings give the same job")
    return grid, jobs


def parse_seeds(spec, what="seeds"):
    """'0-6', '0,3,5', '2-4,9' -> sorted list of distinct ints; ValueError on anything else."""
    seeds = []
    for part in spec.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"malformed --{what} {spec!r}: use forms like 0-6, 0,3,5 or 2-4,9")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"malformed --{what} {spec!r}: range {part.strip()} runs backwards")
        seeds.extend(range(a, b + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"malformed --{what} {spec!r}: a value is listed twice")
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


def save_model(path, params, cfg, run, best_params=None):
    """The parameters (and the best checkpoint's, as best_*) with the config, Net and run record as JSON meta."""
    meta = {"config": config_dict(cfg), "net": asdict(net_of(cfg)), "seed": run["seed"], "final": run["final"],
            "best": run.get("best"), "history": run["history"]}
    best = {"best_" + k: v for k, v in (best_params or {}).items()}
    write_atomic(path, lambda fh: np.savez(fh, meta=json.dumps(meta), **params, **best))


class BadModel(ValueError):
    """A --load-model file that is missing, unreadable or inconsistent."""


def load_model(path, checkpoint="final"):
    """-> (params, meta) from a save_model() file, the final parameters or the best checkpoint's; meta["net"] is
    a Net. BadModel with a one-line reason otherwise."""
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
    if checkpoint == "best":
        if "best_Wh" not in data:
            raise BadModel(f"--load-model {path}: holds no best checkpoint")
        data = {k[5:]: v for k, v in data.items() if k.startswith("best_")}
    peep = "p_i" in data
    H = data["Wh"].shape[0] if "Wh" in data and data["Wh"].ndim == 2 else -1
    if H >= 1 and data["Wh"].shape[1] not in (3 * H, 4 * H):
        raise BadModel(f"--load-model {path}: Wh has shape {data['Wh'].shape}, expected ({H}, {4 * H}) or "
                       f"({H}, {3 * H}) without a forget gate")
    forget = H >= 1 and data["Wh"].shape[1] == 4 * H
    names = [k for k in PARAM_NAMES if (peep or k not in PEEPHOLES) and (forget or k != "p_f")]
    missing = [k for k in names if k not in data]
    if missing:
        raise BadModel(f"--load-model {path}: missing arrays {', '.join(missing)}")
    n_in = data["Wx"].shape[0] if data["Wx"].ndim == 2 else -1
    nH = (4 if forget else 3) * H
    want = {"Wx": (n_in, nH), "Wh": (H, nH), "b": (nH,), "p_i": (H,), "p_f": (H,), "p_o": (H,), "Wy": (H,),
            "by": (1,)}
    for k in names:
        if H < 1 or n_in != 1 or data[k].shape != want[k]:
            raise BadModel(f"--load-model {path}: {k} has shape {data[k].shape}, expected {want[k]} for H={H}")
        if not np.all(np.isfinite(data[k])):
            raise BadModel(f"--load-model {path}: {k} has non-finite entries")
    params = {k: data[k] for k in names}
    try:
        net = Net(**meta["net"]) if "net" in meta else default_net(params)
    except TypeError:
        raise BadModel(f"--load-model {path}: malformed net in the metadata") from None
    if (net.peep, net.forget) != (peep, forget) or net.out not in ("linear", "sigmoid"):
        raise BadModel(f"--load-model {path}: its net {meta['net']} does not match its arrays")
    meta["net"] = net
    return params, meta


def summary_table(runs):
    """Per-seed rows of the final model's metrics, then mean, median and std per variant, as aligned text; for the
    stream tasks the same for the best checkpoint (what the claims table counts), each row labelled."""
    keys = [k for k in ("mse", "solved", "within1", "run_units", "success", "rmse", "period")
            if k in runs[0]["final"]]
    models = ("final", "best") if all(r.get("best") and "run_units" in r["best"] for r in runs) else ("final",)
    w = max(11, *(len(r["variant"]) for r in runs))
    lines = [f"{'variant':{w}s} {'model':>5s} {'seed':>6s} " + " ".join(f"{k:>10s}" for k in keys)]
    num = lambda v: np.nan if v is None else float(v)
    for which in models:
        for r in runs:
            lines.append(f"{r['variant']:{w}s} {which:>5s} {r['seed']:6d} "
                         + " ".join(f"{num(r[which][k]):10.5g}" for k in keys))
        for v in dict.fromkeys(r["variant"] for r in runs):
            m = np.array([[num(r[which][k]) for k in keys] for r in runs if r["variant"] == v])
            for name, fn in (("mean", np.mean), ("median", np.median), ("std", np.std)):
                a = [fn(col[np.isfinite(col)]) if np.isfinite(col).any() else np.nan for col in m.T]
                lines.append(f"{v:{w}s} {which:>5s} {name:>6s} " + " ".join(f"{x:10.5g}" for x in a))
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


def wilson_interval(k, n, z=1.959963984540054):
    """95% Wilson score interval for k successes out of n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class BadSweep(ValueError):
    """A --report file that is not a complete --both sweep or a stream-task sweep."""


def read_results(path):
    """The runs of an --out file at path as {"config", "runs", "n_jobs"}: a JSON document as written, or a grid
    journal (.jsonl) with each run's own "config"; BadSweep with a one-line reason otherwise."""
    try:
        if path.endswith(".jsonl"):
            headers, records, _ = read_journal(path)
            runs = [{**r["run"], "config": r["config"]} if r["kind"] == "run" else
                    {"seed": r["seed"], "variant": r["cell"], "config": r["config"], "diverged": r["message"]}
                    for r in records]
            res = {"config": runs[0]["config"] if runs else None, "runs": runs,
                   "n_jobs": sum(h["n_jobs"] for h in headers) if len(headers) == 1 else None}
        else:
            with open(path) as fh:
                res = json.load(fh)
    except FileNotFoundError:
        raise BadSweep(f"{path}: no such file") from None
    except BadGrid as e:
        raise BadSweep(str(e)) from None
    except (OSError, ValueError) as e:
        raise BadSweep(f"{path}: not JSON ({type(e).__name__})") from None
    except (KeyError, TypeError) as e:
        raise BadSweep(f"{path}: a journal record lacks a field ({type(e).__name__})") from None
    runs = res.get("runs") if isinstance(res, dict) else None
    if isinstance(res, dict) and "settings" in res and "cells" in res:
        raise BadSweep(f"{path}: a grid file, not results (report its journal, the --out of --grid)")
    if not isinstance(runs, list) or not runs:
        raise BadSweep(f"{path}: no 'runs' list")
    return res


def no_runs(journal):
    """True when a journal holds no finished run yet."""
    try:
        return not read_journal(journal)[1]
    except (OSError, BadGrid):
        return False


def checkpoint_names(d):
    """The checkpoints in a journal's folder d (X.jsonl.ckpt/), sorted; a temporary file a kill left mid-write
    (write_atomic's .tmp-*) is not one."""
    return sorted(n for n in os.listdir(d) if n.endswith(".npz") and not n.startswith(".tmp-")) \
        if os.path.isdir(d) else []


def journal_keys(journal):
    """The job keys a journal holds records of (an unreadable journal: none)."""
    try:
        return {r["key"] for r in read_journal(journal)[1]}
    except (OSError, BadGrid):
        return set()


def in_flight(journal):
    """One line per online job checkpointed beside a journal (X.jsonl.ckpt/): its models running and stopped, the
    farthest running model's training steps, the longest training stream so far, the time spent."""
    d, lines = journal + ".ckpt", []
    finished = journal_keys(journal)
    for name in checkpoint_names(d):
        try:
            meta, z = read_checkpoint(os.path.join(d, name))
        except BadGrid as e:
            raise BadSweep(str(e)) from None
        if set(meta["keys"]) | set(meta["done"]) <= finished:
            continue                                 # stale: every model it holds is in the journal
        steps, slen = z["steps"], z["slen"] * z["train"]
        longest = int(max(z["curve_max"].max(initial=0), z["cur_max"].max(initial=0)))
        done = list(meta["done"].values())
        outcome = lambda o: sum(r["outcome"] == o for r in done)
        far = int((steps + slen).max(initial=0))
        longest = max([longest] + [r["longest_units"] for r in done])
        model = lambda r: (lambda c, seed: f"{task_label(c)} {cell_name(c.peep, c.forget)} seed {seed}")(
            setting_of(json.loads(r["key"])[0])[2], r["seed"])
        passed = [f"{model(r)} after {r['steps'] / 1e6:.2f} M steps" for r in done if r["outcome"] == "passed"]
        lines.append(f"checkpoint {name}: {len(meta['keys'])} models running (the farthest at {far / 1e6:.1f} M "
                     f"training steps), {len(done)} stopped ({outcome('passed')} passed, {outcome('diverged')} "
                     f"diverged, {outcome('budget')} at the budget); the longest training stream so far "
                     f"{longest} units; {meta['elapsed'] / 3600:.2f} h of the loop"
                     + (f"; passed: {', '.join(passed)}" if passed else ""))
    return lines


def load_sweep(path):
    """-> {seed: {"peephole": run, "vanilla": run}} and the sweep's config; BadSweep with a one-line reason."""
    sweep = read_results(path)
    runs = sweep["runs"]
    pairs = {}
    for k, r in enumerate(runs):
        try:
            seed, variant, f = r["seed"], r["variant"], r["final"]
            ok = (isinstance(seed, int) and variant in ("peephole", "vanilla")
                  and all(math.isfinite(f[m]) for m in ("mse", "solved", "within1")))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise BadSweep(f"{path}: run {k} lacks a seed, a variant or finite final metrics")
        if variant in pairs.setdefault(seed, {}):
            raise BadSweep(f"{path}: seed {seed} {variant} appears twice")
        pairs[seed][variant] = r
    unpaired = [s for s, p in pairs.items() if len(p) != 2]
    if unpaired:
        raise BadSweep(f"{path}: seeds without both variants: {', '.join(map(str, sorted(unpaired)))}")
    return dict(sorted(pairs.items())), sweep.get("config", {})


# A steadier number than the last checkpoint: the mean over the last LAST_K evaluations. With the headline recipe
# (an evaluation every 100 iterations, the learning rate halved at 1500) these are iterations 2100-3000: the last
# third of training, all at the final learning rate, where one model's exact solve rate still swings by up to 0.6.
LAST_K = 10


def last_k_mean(run, metric, k=LAST_K):
    """The mean of metric over a run's last k evaluations; None without a history that long."""
    h = run.get("history") or []
    return float(np.mean([r[metric] for r in h[-k:]])) if len(h) >= k else None


def report(pairs, headline_seed=4):
    """The README's Markdown tables from load_sweep()'s pairs (with histories: also the last-LAST_K means)."""
    seeds = list(pairs)
    V = ("peephole", "vanilla")
    get = lambda v, m: np.array([pairs[s][v]["final"][m] for s in seeds])
    steady = all(last_k_mean(pairs[s][v], "solved") is not None for s in seeds for v in V)
    last = lambda v, m: np.array([last_k_mean(pairs[s][v], m) for s in seeds])
    out = []
    hs = headline_seed if headline_seed in pairs else seeds[0]
    out += [f"Headline, seed {hs}:", "",
            "| variant | test MSE | exact solve | within one step | sequences seen | wall time (s) |",
            "|---|---:|---:|---:|---:|---:|"]
    for v in V:
        r = pairs[hs][v]
        out.append(f"| {v} | {r['final']['mse']:.5f} | {r['final']['solved']:.3f} | {r['final']['within1']:.3f} "
                   f"| {r.get('seen', 0):,} | {r.get('wall_time', float('nan')):.1f} |")
    k = f"last {LAST_K}"
    out += ["", f"Per seed ({len(seeds)} seeds" + (f"; exact, {k}: the mean over the last {LAST_K} evaluations"
                                                     if steady else "") + "):", "",
            "| seed | peephole MSE | peephole exact | peephole ±1 | vanilla MSE | vanilla exact | vanilla ±1 |"
            + (f" peephole exact, {k} | vanilla exact, {k} |" if steady else ""),
            "|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if steady else "")]
    for s in seeds:
        p, q = pairs[s]["peephole"]["final"], pairs[s]["vanilla"]["final"]
        out.append(f"| {s} | {p['mse']:.5f} | {p['solved']:.3f} | {p['within1']:.3f} "
                   f"| {q['mse']:.5f} | {q['solved']:.3f} | {q['within1']:.3f} |"
                   + (f" {last_k_mean(pairs[s]['peephole'], 'solved'):.3f} "
                      f"| {last_k_mean(pairs[s]['vanilla'], 'solved'):.3f} |" if steady else ""))
    out += ["", "Summary over seeds (exact solve rate; MSE):", "",
            "| variant | exact mean ± std | exact median | exact min | seeds ≥ 0.95 | seeds ≤ 0.6 "
            "| MSE mean ± std | MSE median |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    parts = [("", slice(None))] + ([(", first 7 seeds", slice(0, 7))] if len(seeds) > 7 else [])  # a small sweep
    parts = [(label, part, get) for label, part in parts]
    parts += [(f", mean of the {k}", slice(None), last)] if steady else []
    for label, part, src in parts:
        for v in V:
            e, m = src(v, "solved")[part], src(v, "mse")[part]
            out.append(f"| {v}{label} | {e.mean():.3f} ± {e.std(ddof=1) if e.size > 1 else 0:.3f} "
                       f"| {np.median(e):.3f} | {e.min():.3f} | {int((e >= 0.95).sum())} / {e.size} "
                       f"| {int((e <= 0.6).sum())} / {e.size} "
                       f"| {m.mean():.5f} ± {m.std(ddof=1) if m.size > 1 else 0:.5f} | {np.median(m):.5f} |")
    out += ["", "Paired comparison, peephole − vanilla per seed (95% bootstrap CI of the mean: 10,000 resamples, "
            "seed 0; Wilcoxon signed-rank, two-sided):", "",
            "| metric | peephole better | ties | peephole worse | mean difference | 95% CI | Wilcoxon p |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [("solved", "exact solve rate", 1, get), ("within1", "within-one rate", 1, get),
            ("mse", "test MSE", -1, get)]
    rows += [("solved", f"exact solve rate, mean of the {k}", 1, last)] if steady else []
    for m, name, sign, src in rows:
        d = src("peephole", m) - src("vanilla", m)
        lo, hi = bootstrap_mean_ci(d)
        p = wilcoxon_signed_rank(d)[3]
        fmt = ".5f" if m == "mse" else ".3f"
        out.append(f"| {name} | {int((sign * d > 0).sum())} | {int((d == 0).sum())} | {int((sign * d < 0).sum())} "
                   f"| {d.mean():+{fmt}} | [{lo:+{fmt}}, {hi:+{fmt}}] | {p:.2g} |")
    return "\n".join(out)


def fisher_exact(a, b, c, d):
    """Two-sided Fisher exact test of the 2x2 table [[a, b], [c, d]]: the probability, under fixed margins, of a
    table no more likely than the one observed (the usual two-sided definition)."""
    r1, c1, n = a + b, a + c, a + b + c + d
    prob = lambda x: math.comb(r1, x) * math.comb(n - r1, c1 - x)       # / comb(n, c1), exact integers
    observed = prob(a)
    lo, hi = max(0, c1 - (n - r1)), min(r1, c1)
    more_extreme = sum(q for q in (prob(x) for x in range(lo, hi + 1)) if q <= observed * (1 + 1e-9))
    return min(1.0, more_extreme / math.comb(n, c1))


def mcnemar_exact(b, c):
    """Two-sided exact McNemar test for paired successes: b pairs where only the first succeeds, c where only the
    second does; the binomial probability of a split at least as uneven."""
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n)


def setting_of(config):
    """The task setting and network of a run's config, without the cell: what a report groups by. An online
    run's config from before protocols existed ran every-stream."""
    if config.get("learner") == "rtrl" and "protocol" not in config:
        config = {**config, "protocol": "every-stream"}
    names = {f.name for f in fields(Config)}
    c = {k: v for k, v in config.items() if k in names and k not in ("peep", "forget", "forget_bias")}
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in names})
    return json.dumps(c, sort_keys=True), setting_label(cfg), cfg


def entries_of(res, path):
    """[(config dict, run)] of read_results(): a JSON document's runs take its config with their own cell."""
    out = []
    for k, r in enumerate(res["runs"]):
        try:
            ok = "diverged" in r or all(isinstance(r[c], dict) and ({"run_units", "success"} <= set(r[c])
                                                                     or {"solved", "within1"} <= set(r[c]))
                                        for c in ("final", "best"))
            ok = ok and r["variant"] in CELLS and isinstance(r["seed"], int)
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise BadSweep(f"{path}: run {k} lacks a seed, a cell, or final and best metrics")
        if "config" in r:
            out.append((r["config"], r))
        else:
            peep, forget = CELLS[r["variant"]]
            c = {**res["config"], "peep": peep, "forget": forget}
            if not forget:
                c["forget_bias"] = None
            out.append((c, r))
    return out


def pass_margins(online, tol):
    """The passes of online records (run["online"]) as (largest |error| of the test, holds at STRICT_TOL, within
    0.01 of tol, passes the second test stream or None); a pass from before margins were recorded: None."""
    out = []
    for o in online:
        if o["outcome"] == "passed":
            worst = o.get("test_max_error")
            second = o.get("second_test")
            out.append(None if worst is None else (worst, worst < STRICT_TOL, tol - worst < 0.01,
                                                   second["passed"] if second else None))
    return out


def margins_cell(online, cfg):
    """'a / b / c' of a report row: passes that hold at 0.15, lie within 0.01 of the tolerance, pass the second
    test stream (MSD streams; '-' elsewhere); '?' where a pass recorded no margin."""
    ms = pass_margins(online, TASKS[cfg.task].tol)
    if not ms:
        return "-"
    if None in ms:
        return "? (no margins recorded)"
    second = f"{sum(m[3] for m in ms)}" if cfg.task == "delays" else "-"
    return f"{sum(m[1] for m in ms)} / {sum(m[2] for m in ms)} / {second}"


def worst_cell(online):
    """The median [range] of the passes' largest |error| over their test."""
    ws = [o["test_max_error"] for o in online if o["outcome"] == "passed" and o.get("test_max_error") is not None]
    return f"{np.median(ws):.3f} [{min(ws):.3f}–{max(ws):.3f}]" if ws else "-"


def grid_report(entries):
    """Markdown tables over runs [(config dict, run)] grouped by setting: one row per setting and cell, then the
    comparisons of the peephole cell with each other cell on the seeds both ran."""
    groups = {}
    for config, r in entries:
        key, label, cfg = setting_of(config)
        groups.setdefault(key, (label, cfg, {}))[2].setdefault(r["variant"], {})[r["seed"]] = r
    rows = ["| setting | cell | runs | successes, best (95% CI) | successes, final | median run, best | "
            "median run, final | median \\|period − F\\|, best | training steps, median |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    msd = ["| setting | cell | runs | exact solve, mean ± std | within one, mean | best checkpoint exact, mean "
           f"| exact, mean of the last {LAST_K} evaluations |", "|---|---|---:|---:|---:|---:|---:|"]
    msd_cmp = ["| setting | peephole vs | metric | paired seeds | peephole better / worse | mean difference [95% CI] "
               "| Wilcoxon p |", "|---|---|---|---:|---:|---:|---:|"]
    cmp_rows = ["| setting | peephole vs | paired seeds | successes, best: peephole / other | Fisher p | McNemar p "
                "| Wilcoxon p (best run) |", "|---|---|---:|---:|---:|---:|---:|"]
    online = ["| setting | cell | runs | passed the test | of them: at 0.15 / within 0.01 of the tolerance / on a "
              "second test stream | largest \\|error\\| of a pass, median [range] | training streams, median | "
              "training steps, median | longest training stream (units), median / max | to the first pass: streams, "
              "steps, median [range] |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, cfg, cells in groups.values():
        cells = {c: cells[c] for c in sorted(cells, key=list(CELLS).index)}
        for cell, by_seed in cells.items():
            rs = [r for r in by_seed.values() if "diverged" not in r]
            div = len(by_seed) - len(rs)
            n = f"{len(rs)}" + (f" (+{div} diverged)" if div else "")
            on = [r["online"] for r in rs if "online" in r]
            if on:
                med = lambda xs: f"{np.median(xs):,.0f}" if xs else "-"
                span = lambda xs: f"{med(xs)} [{min(xs):,}–{max(xs):,}]" if xs else "-"
                firsts = [o["first_pass"] for o in on if o["first_pass"]]
                longest = [o["longest_units"] for o in on]
                online.append(f"| {label} | {cell} | {n} | {len(firsts)} / {len(on)} | {margins_cell(on, cfg)} "
                              f"| {worst_cell(on)} | {med([o['streams'] for o in on])} "
                              f"| {med([o['steps'] for o in on])} | {med(longest)} / {max(longest)} "
                              f"| {span([f['streams'] for f in firsts])}; {span([f['steps'] for f in firsts])} |")
            if cfg.task == "msd":
                e = np.array([r["final"]["solved"] for r in rs])
                msd.append(f"| {label} | {cell} | {n} | {e.mean():.3f} ± {e.std(ddof=1) if e.size > 1 else 0:.3f} "
                           f"| {np.mean([r['final']['within1'] for r in rs]):.3f} "
                           f"| {np.mean([r['best']['solved'] for r in rs]):.3f} "
                           f"| {np.mean([last_k_mean(r, 'solved') or np.nan for r in rs]):.3f} |")
                continue
            kb, kf = sum(r["best"]["success"] for r in rs), sum(r["final"]["success"] for r in rs)
            lo, hi = wilson_interval(kb, len(rs))
            med = lambda c: f"{np.median([r[c]['run_units'] for r in rs]):g}" if rs else "-"
            per = [abs(r["best"]["period"] - cfg.F) for r in rs if r["best"].get("period") is not None]
            steps = f"{np.median([r.get('steps', 0) for r in rs]) / 1e6:.2f} M" if rs else "-"
            rows.append(f"| {label} | {cell} | {n} | {kb} / {len(rs)} [{lo:.2f}, {hi:.2f}] | {kf} / {len(rs)} "
                        f"| {med('best')} | {med('final')} | {f'{np.median(per):.4f}' if per else '-'} "
                        f"| {steps} |")
        if "peephole" not in cells:
            continue
        for cell, by_seed in cells.items():
            if cell == "peephole":
                continue
            seeds = [s for s in by_seed if s in cells["peephole"] and "diverged" not in by_seed[s]
                     and "diverged" not in cells["peephole"][s]]
            if not seeds:
                continue
            if cfg.task == "msd":
                for metric, name in (("solved", "exact solve"), ("within1", "within one")):
                    d = np.array([cells["peephole"][s]["final"][metric] - by_seed[s]["final"][metric] for s in seeds])
                    lo, hi = bootstrap_mean_ci(d)
                    msd_cmp.append(f"| {label} | {cell} | {name} | {len(seeds)} | {int((d > 0).sum())} / "
                                   f"{int((d < 0).sum())} | {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] "
                                   f"| {wilcoxon_signed_rank(d)[3]:.2g} |")
                continue
            P = np.array([cells["peephole"][s]["best"]["success"] for s in seeds])
            O = np.array([by_seed[s]["best"]["success"] for s in seeds])
            d = [cells["peephole"][s]["best"]["run_units"] - by_seed[s]["best"]["run_units"] for s in seeds]
            m = len(seeds)
            cmp_rows.append(f"| {label} | {cell} | {m} | {P.sum()} / {O.sum()} "
                            f"| {fisher_exact(P.sum(), m - P.sum(), O.sum(), m - O.sum()):.2g} "
                            f"| {mcnemar_exact(int((P & ~O).sum()), int((~P & O).sum())):.2g} "
                            f"| {wilcoxon_signed_rank(d)[3]:.2g} |")
    setting_cmp = ["| cell | setting | changed | paired seeds | better / worse | exact solve, mean difference [95% CI] "
                   "| Wilcoxon p |", "|---|---|---|---:|---:|---:|---:|"]
    keyed = [(json.loads(key), label, cells) for key, (label, cfg, cells) in groups.items() if cfg.task == "msd"]
    for (c1, l1, cells1), (c2, l2, cells2) in itertools.combinations(keyed, 2):
        changed = [k for k in c1 if c1[k] != c2.get(k)]
        if len(changed) != 1:
            continue
        for cell in cells1.keys() & cells2.keys():
            seeds = [s for s in cells1[cell] if s in cells2[cell] and "diverged" not in cells1[cell][s]
                     and "diverged" not in cells2[cell][s]]
            if not seeds:
                continue
            d = np.array([cells2[cell][s]["final"]["solved"] - cells1[cell][s]["final"]["solved"] for s in seeds])
            lo, hi = bootstrap_mean_ci(d)
            k = changed[0]
            setting_cmp.append(f"| {cell} | {l1} | {k} {c1[k]} → {c2[k]} | {len(seeds)} | {int((d > 0).sum())} / "
                               f"{int((d < 0).sum())} | {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] "
                               f"| {wilcoxon_signed_rank(d)[3]:.2g} |")
    out = []
    if len(msd) > 2:
        out += ["The seed's MSD (final checkpoint unless said):", "", *msd, ""]
    if len(setting_cmp) > 2:
        out += ["The same cell in two settings of the seed's MSD that differ in one flag, paired by seed (second "
                "minus first; 95% bootstrap CI, Wilcoxon signed-rank):", "", *setting_cmp, ""]
    if len(msd_cmp) > 2:
        out += ["Peephole against each other cell on the seed's MSD, final checkpoints paired by seed (95% bootstrap "
                "CI of the mean difference, 10,000 resamples, seed 0; Wilcoxon signed-rank, two-sided):", "",
                *msd_cmp, ""]
    if len(rows) > 2:
        out += ["Stream tasks (free run from the zero state; success: the first test_units units error-free):", "",
                *rows, ""]
    if len(online) > 2:
        out += ["The online learner (--learner rtrl; a passed test stops a model, so its final weights passed it):", "",
                *online, ""]
    if len(cmp_rows) > 2:
        out += ["Peephole against each other cell, best checkpoints (Fisher: success counts as independent samples; "
                "McNemar: paired by seed; Wilcoxon signed-rank: error-free runs paired by seed):", "", *cmp_rows, ""]
    return "\n".join(out).rstrip()


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------

def int_at_least(low, what):
    """An argparse type: an integer >= low, called `what` in its one-line error."""
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            v = None
        if v is None or v < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v
    return parse


positive_int = int_at_least(1, "a positive integer")
seed_int = int_at_least(0, "a seed (an integer >= 0)")     # NumPy's generators take no negative seed


def bounded_int(top):
    """positive_int() up to top: counts the learner keeps in 64-bit integers or allocates a stream for."""
    def parse(s):
        v = positive_int(s)
        if v > top:
            raise argparse.ArgumentTypeError(f"expected at most {top:.0e}, got {s!r}")
        return v
    return parse


# The architectures' and initialisations' names on the command line -> their names in Config and journals ("seed":
# they came with the brief the project started from; the old spelling still works).
ARCH_NAMES = {"tanh": "seed", "seed": "seed", "paper": "paper"}
INIT_NAMES = {"gaussian": "seed", "seed": "seed", "paper": "paper"}


def named(names):
    """An argparse type: one of names' keys, as its value."""
    def parse(s):
        if s not in names:
            shown = ", ".join(k for k in names if k != "seed")
            raise argparse.ArgumentTypeError(f"invalid choice {s!r} (choose from {shown})")
        return names[s]
    return parse


def finite_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def positive_float(s):
    v = finite_float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def int_set(s):
    """'0,1', '0-2', '0-10' -> a sorted tuple of distinct non-negative ints (the I set)."""
    try:
        return tuple(parse_seeds(s, "I"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def window_units(s):
    """'10' -> (10, 10), a fixed window; '10-200' -> (10, 200), self-paced."""
    lo, sep, hi = s.partition("-")
    if not lo.isdigit() or (sep and not hi.isdigit()) or int(lo) < 1 or (sep and int(hi) < int(lo)):
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX units, 1 <= MIN <= MAX, got {s!r}")
    return int(lo), int(hi) if sep else int(lo)


# Flags that belong to some tasks only; given for another task they are an error, not silently ignored.
TASK_FLAGS = {"T": ("msd",), "D_min": ("msd",), "D_max": ("msd",), "n_test": ("msd",), "F": ("delays", "gts", "pfg"),
              "I": ("delays",), "wave": ("pfg",), "window": ("delays", "gts", "pfg"),
              "test_units": ("delays", "gts", "pfg")}


def recipe_parser(description, msd_only=False):
    """A parser with the task, model, training and evaluation flags and one-line errors with argparse's exit
    status 2. Flags left out take the task's defaults (Config, TASKS). msd_only: the flags of the MSD variant's BPTT
    recipe only (the figure scripts, which draw that task), the others fixed at their defaults."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.error = lambda msg: ap.exit(2, f"{ap.prog}: error: {msg}\n")
    d = lambda task, k: TASKS[task].defaults[k]
    if msd_only:
        ap.set_defaults(task=None, F=None, I=None, wave=None, window=None, learner=None, momentum=None,
                        max_streams=None, max_steps=None, protocol=None, test_units=None)
    task = ap.add_argument_group("task: the MSD variant" if msd_only else
                                 "task (defaults: the task's, TASKS in the module)")
    if not msd_only:
        task.add_argument("--task", choices=tuple(TASKS), help="msd (default): the MSD variant; delays: the paper's "
                          "MSD stream (NMSD with --window 1); gts, pfg: the paper's GTS and PFG")
    task.add_argument("--T", type=positive_int, help=f"msd: sequence length ({d('msd', 'T')})")
    task.add_argument("--D-min", type=int, help=f"msd: shortest spike gap D ({d('msd', 'D_min')})")
    task.add_argument("--D-max", type=int, help=f"msd: longest spike gap D ({d('msd', 'D_max')})")
    if not msd_only:
        task.add_argument("--F", "--period", dest="F", type=positive_int,
                          help=f"delays: the interval's offset F; gts, pfg: the period ({d('gts', 'F')})")
        task.add_argument("--I", type=int_set, help="delays: the set I(n) is drawn from: 0,1 or 0-2 or 0-10 (0,1)")
        task.add_argument("--wave", choices=tuple(WAVES), help="pfg: f_cos, f_tri or f_rect (cos)")
        task.add_argument("--window", type=window_units, help="streams: training window in units, N fixed or "
                          "MIN-MAX self-paced (delays 10; gts, pfg 10-200, with --arch paper 3)")
    model = ap.add_argument_group("model")
    model.add_argument("--arch", type=named(ARCH_NAMES), default="seed", metavar="{tanh,paper}",
                       help="tanh (the 8-cell network; 'seed' in journals, the old spelling): tanh cell input and "
                            "output, linear output unit; paper (the one-cell network): identity cell input, no output "
                            "squashing, sigmoid output unit for spikes (default tanh)")
    model.add_argument("--init", type=named(INIT_NAMES), metavar="{gaussian,paper}",
                       help="gaussian ('seed' in journals): Gaussian, forget bias 1; paper: uniform [-0.1, 0.1], gate "
                            "biases 0, -2, +2 (default: the architecture's)")
    model.add_argument("--hidden", type=positive_int, help="cells H (seed arch 8, paper arch 1)")
    model.add_argument("--no-forget", dest="forget", action="store_false", help="the 1997 cell: no forget gate")
    model.add_argument("--forget-bias", type=finite_float, help="(seed init 1.0, paper init -2.0)")
    model.add_argument("--init-noise", type=finite_float, default=0.0, help="add N(0, S^2) to every initial weight "
                       "(its own random stream): the same init, perturbed (default 0)")
    model.add_argument("--peep-scale", type=finite_float, default=0.1, help="peepholes at init: N(0,1) x S (seed "
                       "init) or uniform in [-S, S] (paper init); 0 starts them at zero (default 0.1)")
    model.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    tr = ap.add_argument_group("training")
    tr.add_argument("--batch", type=positive_int, help="sequences or streams per step (msd 32, delays 16, gts/pfg 1)")
    tr.add_argument("--iters", type=positive_int, help=f"({d('msd', 'iters')}; --arch paper {ONE_CELL['iters']})")
    tr.add_argument("--lr", type=finite_float,
                    help=f"Adam's step size ({d('msd', 'lr')}; --arch paper {ONE_CELL['lr']})")
    tr.add_argument("--lr-decay-factor", type=finite_float, help=f"({d('msd', 'lr_decay_factor')})")
    tr.add_argument("--lr-decay-every", type=positive_int, help=f"({d('msd', 'lr_decay_every')})")
    tr.add_argument("--clip", type=finite_float, help=f"global L2 gradient norm bound ({d('msd', 'clip')})")
    if not msd_only:
        online_flags(ap)
    ev = ap.add_argument_group("evaluation")
    ev.add_argument("--n-test", type=positive_int, help=f"msd: held-out sequences ({d('msd', 'n_test')})")
    if not msd_only:
        ev.add_argument("--test-units", type=bounded_int(10 ** 6), help="streams: units in the free-run test (1000; "
                        "at most 10^6)")
    ev.add_argument("--test-seed", type=seed_int, help=f"({d('msd', 'test_seed')})")
    ev.add_argument("--eval-every", type=positive_int, help=f"({d('msd', 'eval_every')}; --arch paper "
                    f"{ONE_CELL['eval_every']})")
    return ap


def online_flags(ap):
    """The online learner's flags (recipe_parser)."""
    on = ap.add_argument_group("learner (--learner rtrl: the paper's online learning; its defaults are the paper's)")
    on.add_argument("--learner", choices=("bptt", "rtrl"), help="bptt (default): BPTT + Adam on windows; rtrl: "
                    "online truncated-gradient learning with momentum, streams that end at the first error")
    on.add_argument("--momentum", type=finite_float, help="rtrl: momentum (delays 0.9999, with --window 1 0.99; "
                    "gts 0.999; pfg 0.99); its --lr defaults to 1e-5")
    on.add_argument("--max-streams", type=bounded_int(10 ** 15), help="rtrl: training streams per model (10^7)")
    on.add_argument("--max-steps", type=bounded_int(10 ** 15), help="rtrl: training time steps per model (10^8)")
    on.add_argument("--protocol", choices=tuple(PROTOCOLS), help="rtrl: paper (default): the frozen test runs "
                    "only after a training stream ran 100 units error-free, and a pass needs both; every-stream: "
                    "a test after every training stream, any passes")


def build_parser():
    ap = recipe_parser("LSTM with and without peephole connections on precise-timing tasks.")
    v = ap.add_argument_group("variant").add_mutually_exclusive_group()
    v.add_argument("--peep", dest="variant", action="store_const", const="peep", help="peephole LSTM (default)")
    v.add_argument("--no-peep", dest="variant", action="store_const", const="vanilla", help="LSTM without peepholes")
    v.add_argument("--both", dest="variant", action="store_const", const="both", help="both, paired per seed")
    v.add_argument("--cells", help=f"a comma list of cells, paired per seed: {', '.join(CELLS)}")
    seeds = ap.add_argument_group("seeds")
    s = seeds.add_mutually_exclusive_group()
    s.add_argument("--seed", type=seed_int, default=4, help="one model's seed (default 4)")
    s.add_argument("--seeds", help="many seeds: 0-6, 0,3,5 or 2-4,9")
    seeds.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes for many models")
    grid = ap.add_argument_group("grids")
    grid.add_argument("--grid", help="a JSON grid file: settings x cells x seeds (needs --out X.jsonl)")
    grid.add_argument("--resume", action="store_true", help="skip the runs an --out X.jsonl journal already holds")
    grid.add_argument("--append", action="store_true", help="add to an --out X.jsonl journal of another grid or code")
    grid.add_argument("--continue-from", metavar="JOURNAL", help="online grids: the journal of the same grid at a "
                      "smaller budget (max_streams, max_steps): its models that stopped at that budget go on from "
                      "where they stopped, those that passed or diverged are carried over")
    grid.add_argument("--scheduler", metavar="ADDRESS", help="run the jobs on this dask.distributed scheduler")
    grid.add_argument("--checkpoint-every", type=positive_float, metavar="SECONDS", help="online jobs "
                      f"(--learner rtrl) beside an --out X.jsonl journal: seconds between checkpoints in X.jsonl.ckpt/ "
                      f"(default {CHECKPOINT_EVERY:.0f}; also at SIGTERM and SIGINT)")
    grid.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help="the online learner's (--learner "
                      "rtrl) time loop: numba, compiled (requirements-fast.txt), or numpy (default: numba when it "
                      f"imports, here {DEFAULT_ENGINE})")
    grid.add_argument("--models", type=positive_int, help="models of one setting trained through one time loop per "
                      "process (default: 16 when hidden x batch <= 16, else 1); results do not depend on it")
    io = ap.add_argument_group("files and modes")
    io.add_argument("--out", help="X.json: arguments, histories and final metrics, written at the end; X.jsonl: a "
                    "journal, each run appended the moment it ends (resumable)")
    io.add_argument("--save-model", help="write the trained parameters, the best checkpoint's and the config (.npz)")
    io.add_argument("--load-model", help="a --save-model file to re-score (with --eval-only)")
    io.add_argument("--checkpoint", choices=("final", "best"), default="final", help="which --load-model parameters")
    io.add_argument("--eval-only", action="store_true", help="score --load-model on its task's held-out data")
    io.add_argument("--gradcheck", action="store_true", help="check backward() against finite differences")
    io.add_argument("--report", metavar="OUT_JSON", nargs="+", help="print Markdown tables: of one MSD --both sweep, "
                    "or one table over stream-task --out files")
    io.add_argument("--quiet", action="store_true", help="no per-evaluation progress lines")
    return ap


def config_from_args(a, peep):
    """The Config of parsed recipe flags (argparse's dest names are the Config's field names; None: default)."""
    return Config(**{f.name: getattr(a, f.name) for f in fields(Config) if f.name != "peep"
                     and getattr(a, f.name) is not None}, peep=peep)


def check_recipe(a):
    """Checks of the recipe flags that argparse cannot do: the first problem as one line, or None."""
    task = a.task or "msd"
    for k, tasks in TASK_FLAGS.items():
        if getattr(a, k) is not None and task not in tasks:
            return f"--{k.replace('_', '-')} applies to --task {' / '.join(tasks)}, not {task}"
    if not a.forget and a.forget_bias is not None:
        return "--forget-bias needs a forget gate: drop it or --no-forget"
    if a.learner == "rtrl":
        if task == "msd":
            return "--learner rtrl learns the paper's stream tasks (--task delays, gts, pfg), not the seed's msd"
        for k in BPTT_ONLY:
            if getattr(a, k) is not None and not (k == "window" and task == "delays" and a.window == (1, 1)):
                return (f"--{k.replace('_', '-')} belongs to --learner bptt (BPTT + Adam; rtrl learns online, one "
                        f"stream per model{', and --window 1 is NMSD' if k == 'window' else ''}): drop it")
    else:
        for k in RTRL_ONLY:
            if getattr(a, k) is not None:
                return f"--{k.replace('_', '-')} belongs to --learner rtrl"
    if task in GENERATION and a.batch not in (None, 1):
        return f"--task {task} has no input, so every stream is the same: --batch must be 1 (got {a.batch})"
    cfg = config_from_args(a, True)
    problems = check_task(cfg.T, cfg.D_min, cfg.D_max) if task == "msd" else []
    if task == "pfg" and cfg.F < 2:
        problems.append(f"--period must be >= 2 for pfg (got {cfg.F})")
    if cfg.peep_scale < 0:
        problems.append(f"--peep-scale must be >= 0 (got {cfg.peep_scale})")
    if cfg.init_noise < 0:
        problems.append(f"--init-noise must be >= 0 (got {cfg.init_noise})")
    if cfg.lr <= 0:
        problems.append(f"--lr must be > 0 (got {cfg.lr})")
    if cfg.learner == "rtrl":
        if not 0 <= cfg.momentum < 1:
            problems.append(f"--momentum must be in [0, 1) (got {cfg.momentum})")
    else:
        if cfg.clip <= 0:
            problems.append(f"--clip must be > 0 (got {cfg.clip})")
        if not 0 < cfg.lr_decay_factor <= 1:
            problems.append(f"--lr-decay-factor must be in (0, 1] (got {cfg.lr_decay_factor})")
    return problems[0] if problems else None


def check_args(a, ap):
    """check_recipe() and the cross-flag checks of this command."""
    if a.eval_only != bool(a.load_model):
        return "--eval-only and --load-model go together"
    if a.gradcheck:
        given = [k for k, v in vars(a).items() if k != "gradcheck" and v != ap.get_default(k)]
        if given:
            return (f"--gradcheck checks every cell in both architectures on its own small window: drop "
                    f"--{given[0].replace('_', '-')}")
        return None
    many = a.seeds is not None or a.variant == "both" or a.cells is not None or a.grid
    if a.save_model and many:
        return "--save-model takes one model: drop --seeds, --both, --cells and --grid"
    journal = bool(a.out) and a.out.endswith(".jsonl")
    if a.out and os.path.isdir(a.out):
        return f"--out {a.out} is a directory: name a file"
    if (a.resume or a.append or a.grid) and not journal:
        return "--resume, --append and --grid need --out X.jsonl (a journal)"
    if a.continue_from is not None and not a.grid:
        return "--continue-from needs --grid (the same grid with a larger budget)"
    if a.continue_from is not None and os.path.abspath(a.continue_from) == os.path.abspath(a.out):
        return "--continue-from names the journal of the smaller budget: --out must be another file"
    if a.out and not (journal or a.out.endswith(".json")):
        return f"--out {a.out}: name it X.json (one document) or X.jsonl (a journal)"
    if a.cells is not None and not a.forget:
        return "--cells names the cells: drop --no-forget"
    if a.grid:
        given = [k for k, v in vars(a).items() if v != ap.get_default(k) and k in
                 {f.name for f in fields(Config)} | {"variant", "cells", "seeds", "seed"}]
        if given:
            return f"--grid takes settings, cells and seeds from its file: drop --{given[0].replace('_', '-')}"
        return None
    return check_recipe(a)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            return next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor()


def versions():
    """Versions and the machine: per-seed values depend on the CPU and NumPy's SIMD paths and BLAS build."""
    try:
        npc = np.show_config(mode="dicts")
        simd, blas = npc.get("SIMD Extensions", {}), npc.get("Build Dependencies", {}).get("blas", {})
        blas = f"{blas.get('name')} {blas.get('version')}"
    except Exception:   # show_config's dict form is NumPy >= 1.26 and not guaranteed elsewhere
        simd, blas = None, None
    return {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "cores": os.cpu_count(), "cpu": cpu_model(), "numpy_simd": simd, "blas": blas,
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}


def describe(cfg):
    """One line: the task and recipe."""
    task = task_label(cfg) + {"msd": " (the seed's)", "delays": " (the paper's MSD)"}.get(cfg.task, "")
    if cfg.window:
        task += f" window {cfg.window[0]}" + (f"-{cfg.window[1]} (self-paced)" if cfg.window[1] > cfg.window[0] else "")
    net = net_of(cfg)
    test = (f"{cfg.n_test} seqs" if cfg.task == "msd" else f"free run of {cfg.test_units} units"
            + (f" (final and best: {TASKS[cfg.task].long * cfg.test_units})" if TASKS[cfg.task].long > 1 else ""))
    if cfg.learner == "rtrl":
        recipe = (f"online (rtrl) lr={cfg.lr} momentum={cfg.momentum} budget {cfg.max_streams} streams or "
                  f"{cfg.max_steps} steps")
    else:
        recipe = (f"batch={1 if cfg.task in GENERATION else cfg.batch} iters={cfg.iters} lr={cfg.lr} "
                  f"(x{cfg.lr_decay_factor} every {cfg.lr_decay_every}) clip={cfg.clip}")
    return (f"{task}  arch={cfg.arch} (output {net.out}) init={cfg.init} H={cfg.hidden} {recipe} {cfg.dtype}  "
            f"test: {test}, seed {cfg.test_seed}")


def final_line(run):
    if "online" in run:
        o, first = run["online"], run["online"]["first_pass"]
        return (f"online seed {run['seed']} {run['variant']}: {o['outcome']} after {o['streams']} training streams "
                f"({o['steps']} steps, {o['test_steps']} test steps); longest training stream {o['longest_units']} "
                f"units" + (f"; first passed test after {first['streams']} streams" if first else "")
                + f"\nfinal seed {run['seed']} {run['variant']}: {progress(run['final'])}")
    return f"final seed {run['seed']} {run['variant']}: {progress(run['final'])}" + (
        f"\nbest  seed {run['seed']} {run['variant']}: iteration {run['best']['iter']}, {progress(run['best'])}"
        if run.get("best") and "run_units" in run["best"] else "")


def saved_config(meta, a):
    """The Config a saved model was trained with, its held-out flags overridden by those given to this command."""
    c = dict(meta.get("config", {}))
    for k in ("I", "window"):
        if c.get(k) is not None:
            c[k] = tuple(c[k])
    c = {k: v for k, v in c.items() if k in {f.name for f in fields(Config)}}
    for k in ("T", "D_min", "D_max", "n_test", "test_seed", "F", "I", "wave", "test_units"):
        if getattr(a, k) is not None:
            c[k] = getattr(a, k)
    return Config(**c)


def main(argv=None):
    ap = build_parser()
    a = ap.parse_args(argv)
    problem = check_args(a, ap)
    try:
        seeds = parse_seeds(a.seeds) if a.seeds is not None else [a.seed]
        cells = parse_cells(a.cells) if a.cells is not None else \
            [cell_name(p, a.forget) for p in {"peep": [True], "vanilla": [False], "both": [True, False],
                                              None: [True]}[a.variant]]
    except ValueError as e:
        problem = problem or str(e)
    if problem:
        ap.error(problem)
    if a.scheduler is not None and not a.scheduler.strip():
        ap.error("--scheduler needs an address, such as tcp://HOST:8786")
    if a.scheduler:
        try:
            import dask.distributed
        except ImportError:
            ap.error("--scheduler needs dask.distributed: pip install -r requirements-dask.txt")
        try:                                # before anything is written: a dead or malformed address is one line
            client = dask.distributed.Client(a.scheduler, timeout="5s")
        except (OSError, ValueError, TypeError) as e:
            ap.error(f"--scheduler {a.scheduler}: cannot reach a scheduler there within 5 s ({type(e).__name__}): "
                     "start one, or check the address")
        try:                                # and a scheduler or worker without this module is named
            cluster_can_run(client, a.scheduler)
        except BadGrid as e:
            ap.error(str(e))
        finally:
            client.close()

    if a.gradcheck:                     # BPTT against finite differences; the online gradient against truncated BPTT
        ok = True
        for label, check, tol, what in (("gradcheck", gradcheck, GRADCHECK_TOL, "gradcheck"),
                                        ("online   ", online_check, ONLINE_TOL,
                                         "online learner's gradient = truncated BPTT")):
            worst = 0.0
            for net in GRADCHECK_NETS:
                errs = check(net)
                worst = max(worst, *errs.values())
                print(f"{label} {net_label(net)} " + "  ".join(f"{k} {e:.1e}" for k, e in errs.items()))
            print(f"{what} {'passed' if worst <= tol else 'FAILED'}: max relative error {worst:.1e} "
                  f"(tolerance {tol:.0e})")
            ok = ok and worst <= tol
        return 0 if ok else 1

    if a.report:
        try:
            flight = {f: in_flight(f) for f in a.report if f.endswith(".jsonl")}
            files = [(f, read_results(f)) for f in a.report if not (flight.get(f) and no_runs(f))]
            for f, lines in flight.items():                   # online jobs still running: their checkpoints
                print("".join(f"{f}: {ln}\n" for ln in lines))
            if len(files) == 1 and not a.report[0].endswith(".jsonl") and \
                    (files[0][1].get("config") or {}).get("task", "msd") == "msd":
                pairs, _ = load_sweep(a.report[0])
                print(report(pairs))
            elif files:
                for f, res in files:
                    if res.get("n_jobs") and res["n_jobs"] > len(res["runs"]):
                        print(f"{f}: {len(res['runs'])} of {res['n_jobs']} runs done\n")
                print(grid_report([e for f, res in files for e in entries_of(res, f)]))
        except BadSweep as e:
            ap.error(f"--report {e}")
        return 0

    if a.eval_only:
        try:
            params, meta = load_model(a.load_model, a.checkpoint)
            cfg = saved_config(meta, a)
        except BadModel as e:
            ap.error(str(e))
        except (TypeError, ValueError, KeyError):
            ap.error(f"--load-model {a.load_model}: malformed config in the metadata")
        if a.task and a.task != cfg.task:
            ap.error(f"--load-model {a.load_model} was trained on --task {cfg.task}, not {a.task}")
        net = meta["net"]
        print(f"re-scoring {a.load_model} ({a.checkpoint}: {cell_name(net.peep, net.forget)}, "
              f"H={params['Wh'].shape[0]}, trained as seed {meta.get('seed')}): {describe(cfg)}")
        test = test_set(cfg, TASKS[cfg.task].long * cfg.test_units if cfg.task != "msd" else None)
        run = {"seed": meta.get("seed"), "variant": cell_name(net.peep, net.forget),
               "final": evaluate(params, test, net, cfg)}
        print(final_line(run))
        return 0

    try:
        grid, jobs = load_grid(a.grid) if a.grid else (None, cell_jobs(a, cells, seeds, "command line"))
    except BadGrid as e:
        ap.error(str(e))
    cfg0 = jobs[0][0]
    online = [cfg for cfg, _ in jobs if cfg.learner == "rtrl"]
    if a.engine == "numba" and online and not HAVE_NUMBA:
        ap.error("--engine numba needs numba: pip install -r requirements-fast.txt (or --engine numpy)")
    if a.engine == "numba" and any(cfg.dtype != "float64" for cfg in online):
        ap.error("--engine numba computes in float64: drop --dtype float32, or --engine numpy")
    journal = a.out if a.out and a.out.endswith(".jsonl") else None
    if not a.grid:
        print(describe(cfg0))
    print(f"models: {len(jobs)} ({', '.join(cells) if not a.grid else 'grid ' + a.grid})"
          + (f" x seeds {a.seeds}" if a.seeds is not None else f", seed {a.seed}" if not a.grid else "")
          + (f" on {a.scheduler}" if a.scheduler else
             f" on {min(a.workers, len(jobs))} workers" if len(jobs) > 1 else ""))
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    t0 = time.perf_counter()
    try:
        if len(jobs) == 1 and not journal and not a.scheduler and cfg0.learner == "bptt":
            try:
                results = [("done", *run_one(cfg0, jobs[0][1], log=None if a.quiet else print))]
            except KeyboardInterrupt:
                raise Interrupted("interrupted: nothing written") from None
        else:
            results = run_grid(jobs, a.workers, journal, a.resume, a.append, a.scheduler, grid=grid, quiet=a.quiet,
                               models=a.models, checkpoint_every=a.checkpoint_every, engine=a.engine,
                               continue_from=a.continue_from)
    except Diverged as e:
        print(f"error: {e}; no output written", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(e, file=sys.stderr)
        return 128 + (STOP[0] if STOP else signal.SIGINT)
    except BadGrid as e:
        ap.error(str(e))
    wall = time.perf_counter() - t0
    if journal:
        res = read_results(journal)
        print(grid_report(entries_of(res, journal)))
        print(f"wall time {wall:.1f}s; {journal}: {len(res['runs'])} runs")
        return 0
    runs = [r[1] for r in results]
    print(final_line(runs[0]) if len(runs) == 1 else summary_table(runs))
    print(f"wall time {wall:.1f}s")
    if a.save_model:
        save_model(a.save_model, results[0][2], cfg0, runs[0], results[0][3])
        print(f"wrote {a.save_model}")
    if a.out:
        args = {k: v for k, v in vars(a).items()}
        write_json(a.out, {"args": args, "config": config_dict(cfg0), "runs": runs, "wall_time": wall, **versions()})
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
