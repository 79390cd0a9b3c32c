"""ByteDMD: the data-movement cost of a computation, by tracing it ("two stacks with liveness").

A measuring instrument, not part of training. The definition is the two-stack one of cybertronai/ByteDMD-definition
at commit 3ae4dda70d97 (its `bytedmd.py` and `test_bytedmd.py`; every trace and cost of that test file is a test in
tests/test_bytedmd.py). Other commits of the definition price differently: at cybertronai/ByteDMD 09e56b581cd0,
for one, `(a + b) + c` reads at depths [3, 2, 1, 2] with no final read, against [1, 2, 1, 3, 1] here.

1. Elements: every scalar in the arguments, flattened left to right (nested lists/tuples row-major); literal
   constants are free and untracked.
2. Argument stack: argument element k sits at fixed depth k until it is first read.
3. Working stack, LRU order, empty at the start. An operation reads its operands in order [self, other] (reflected
   operators: [other, self]), every occurrence charged, then pushes one new element per result (divmod: the
   quotient, then the remainder). Comparisons, == and != included, give a tracked bool. Conversions to
   bool/int/float/index and hashing are a read and produce no tracked value. Writes are free.
4. Liveness: a first pass records each element's last read; returned elements live to the end; an element never
   read dies when stored.
5. Replay per operation: each operand's depth is taken from the stacks as they were before the operation (an
   argument not yet read: its fixed depth; otherwise its position on the working stack, top = 1); then, in read
   order, first-read arguments are pushed onto the working stack and other operands move to the top; then every
   element whose last read has passed is deleted; the output is pushed and the same deletion runs.
6. At the end every returned element is read once more against the final stacks, without reordering.
7. Cost = Σ over reads of c(d), c(d) = Σ_{j=(d-1)B+1}^{dB} ceil(sqrt(j)), B bytes per element.

    trace = record(f, *args)      # run f on tracked scalars: the operations and what f returned
    depths = replay(trace)        # the depth of every read, Fenwick tree: O(log n) per read
    cost(depths, B=1)             # the integer cost

Unlike the public tracer, exp, tanh and the sigmoid of tracked values (`tracked.exp`, `tracked.tanh`,
`tracked.sigmoid`, `tracked.sqrt`) are operations whose reads are charged, not untracked floats.
"""
import math
import operator


class Tracked:
    """A scalar whose reads the trace records. `v` is its value, `i` its element id. Every operator of `_BINARY` and
    `_UNARY` below is an operation; conversions (`_read`) are reads with no tracked result."""
    __slots__ = ("v", "i", "t")

    def __init__(self, v, i, t):
        self.v, self.i, self.t = v, i, t

    def _op(self, fn, others=(), reflected=False):
        """fn on the values, reading [self, *others] ([other, self] when reflected), tracked operands only. A tuple
        result (divmod) is one tracked element per entry, pushed in order."""
        operands = (others[0], self) if reflected else (self, *others)
        reads = tuple(x.i for x in operands if isinstance(x, Tracked))
        v = fn(*(x.v if isinstance(x, Tracked) else x for x in operands))
        if isinstance(v, tuple):
            return tuple(self.t.emit(reads if k == 0 else (), e) for k, e in enumerate(v))
        return self.t.emit(reads, v)

    def _read(self, v):                                  # a conversion: a read, no tracked result
        self.t.ops.append(((self.i,), None))
        return v

    def __bool__(self): return self._read(bool(self.v))
    def __float__(self): return self._read(float(self.v))
    def __int__(self): return self._read(int(self.v))
    def __index__(self): return self._read(operator.index(self.v))
    def __hash__(self): return self._read(hash(self.v))


# Operators as the definition's tracer lists them: binary ones also reflected (`2 - a` reads [a]), comparisons
# (== and != included) give a tracked bool, divmod two elements, round/trunc/floor/ceil one.
_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
           "floordiv": operator.floordiv, "mod": operator.mod, "divmod": divmod, "pow": pow,
           "lshift": operator.lshift, "rshift": operator.rshift, "and": operator.and_, "or": operator.or_,
           "xor": operator.xor, "matmul": operator.matmul}
_COMPARE = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
            "ge": operator.ge}
_UNARY = {"neg": operator.neg, "pos": operator.pos, "abs": abs, "invert": operator.invert, "round": round,
          "trunc": math.trunc, "floor": math.floor, "ceil": math.ceil}


def _method(fn, reflected=False):
    def method(self, *others):
        return self._op(fn, others, reflected)
    return method


for _name, _fn in {**_BINARY, **_COMPARE, **_UNARY}.items():
    setattr(Tracked, f"__{_name}__", _method(_fn))
for _name, _fn in _BINARY.items():
    setattr(Tracked, f"__r{_name}__", _method(_fn, reflected=True))


def _unary(fn):
    def f(x):
        return x.t.emit((x.i,), fn(x.v)) if isinstance(x, Tracked) else fn(x)
    return f


exp = _unary(math.exp)
tanh = _unary(math.tanh)
sqrt = _unary(math.sqrt)
sigmoid = _unary(lambda a: 1.0 / (1.0 + math.exp(-a)))


class Trace:
    """What record() saw: n_args argument elements (ids 0 .. n_args-1), ops [(read ids, output id or None)], the
    ids of the returned elements (tracked ones; constants are free) and the returned value itself."""

    def __init__(self):
        self.ops, self.n = [], 0
        self.n_args, self.returned, self.value = 0, [], None

    def new(self, v):
        x = Tracked(v, self.n, self)
        self.n += 1
        return x

    def emit(self, reads, v):
        x = self.new(v)
        self.ops.append((reads, x.i))
        return x

    def wrap(self, a):
        """Arguments as tracked elements, left to right, nesting kept."""
        if isinstance(a, (list, tuple)):
            return type(a)(self.wrap(e) for e in a)
        return self.new(a)


def _flatten(a):
    if isinstance(a, (list, tuple)):
        for e in a:
            yield from _flatten(e)
    else:
        yield a


def record(f, *args):
    """Run f on tracked copies of args (numbers or nested lists/tuples of them); returns the Trace."""
    t = Trace()
    tracked = [t.wrap(a) for a in args]
    t.n_args = t.n
    t.value = f(*tracked)
    t.returned = [e.i for e in _flatten(t.value) if isinstance(e, Tracked)]
    return t


def _last_reads(trace):
    """Per element, the index of the operation that reads it last; returned elements: past the end."""
    last = [-1] * trace.n
    for k, (reads, _) in enumerate(trace.ops):
        for r in reads:
            last[r] = k
    for r in trace.returned:
        last[r] = len(trace.ops)
    return last


class _Fenwick:
    def __init__(self, n):
        self.n, self.tree = n, [0] * (n + 1)

    def add(self, i, d):                                # position i in 1..n
        while i <= self.n:
            self.tree[i] += d
            i += i & -i

    def prefix(self, i):                                # sum of positions 1..i
        s = 0
        while i > 0:
            s += self.tree[i]
            i -= i & -i
        return s


def replay(trace):
    """The depth of every read, in order (the final reads of the returned elements last).

    The working stack is kept as LRU timestamps: an element's stamp is the time it last came to the top, and its
    depth is the number of live working elements with a stamp at least as recent, counted with a Fenwick tree over
    stamps. Each read, move and deletion is O(log n)."""
    last = _last_reads(trace)
    n_stamps = sum(len(r) for r, _ in trace.ops) + len(trace.ops) + 1
    fw, stamp, clock, live = _Fenwick(n_stamps), {}, 0, 0
    on_args = [True] * trace.n_args                       # not yet read: still on the argument stack
    depths = []

    def depth(e):
        if e < trace.n_args and on_args[e]:
            return e + 1
        return live - fw.prefix(stamp[e] - 1)

    def to_top(e):
        nonlocal clock, live
        if e in stamp:
            fw.add(stamp[e], -1)
        else:
            live += 1
        clock += 1
        stamp[e] = clock
        fw.add(clock, 1)

    def drop(e):
        nonlocal live
        fw.add(stamp.pop(e), -1)
        live -= 1

    for k, (reads, out) in enumerate(trace.ops):
        depths.extend(depth(e) for e in reads)            # all from the stacks before the operation
        for e in reads:
            if e < trace.n_args and on_args[e]:
                on_args[e] = False
            to_top(e)
        for e in dict.fromkeys(reads):
            if last[e] == k:
                drop(e)
        if out is not None:
            to_top(out)
            if last[out] <= k:                            # never read: dies when stored
                drop(out)
    depths.extend(depth(e) for e in trace.returned)
    return depths


def replay_lists(trace):
    """The same depths with a plain list as the working stack (time grows with reads x live elements): the
    reference the tests hold replay() to, and the baseline of its speed-up."""
    last = _last_reads(trace)
    stack, on_args, depths = [], [True] * trace.n_args, []   # stack[-1] is the top

    def depth(e):
        if e < trace.n_args and on_args[e]:
            return e + 1
        return len(stack) - stack.index(e)

    for k, (reads, out) in enumerate(trace.ops):
        depths.extend(depth(e) for e in reads)
        for e in reads:
            if e < trace.n_args and on_args[e]:
                on_args[e] = False
            else:
                stack.remove(e)
            stack.append(e)
        for e in dict.fromkeys(reads):
            if last[e] == k:
                stack.remove(e)
        if out is not None and last[out] > k:
            stack.append(out)
    depths.extend(depth(e) for e in trace.returned)
    return depths


def cost(depths, B=1):
    """Σ c(d) over the reads, c(d) = Σ_{j=(d-1)B+1}^{dB} ceil(sqrt(j)): an integer."""
    isqrt_up = lambda j: math.isqrt(j - 1) + 1            # ceil(sqrt(j)) for j >= 1, exactly
    c = {}
    total = 0
    for d in depths:
        if d not in c:
            c[d] = sum(isqrt_up(j) for j in range((d - 1) * B + 1, d * B + 1))
        total += c[d]
    return total


def bytedmd(f, *args, B=1):
    """The ByteDMD cost of f(*args) with B bytes per element."""
    return cost(replay(record(f, *args)), B)
