# PyTorch (CPU) reference for bench/vs-torch.ts: the cases of bench/cases.ts as a user would write
# them in PyTorch, batched over tasks with torch.func (grad + vmap) and one task at a time with
# torch.autograd (the learn2learn style: clone, adapt with create_graph, backward).
#
# A line-oriented server: bench/vs-torch.ts starts it and writes one JSON request per line on stdin,
#   {"op": "case", "id", "spec", "kind", "innerSteps", "innerLr", "tasks": [{"sx","sxShape","sy","qx","qxShape","qy"}]}
#       (arrays base64 little-endian: x float32, y float32 for regression, int32 class indices)
#   {"op": "time", "id", "algorithm": "maml"|"fomaml"|"reptile"|"meta-sgd"|"anil"|"protonet", "variant": "vmap"|"loop", "threads"?: n}
#   {"op": "quit"}
# and reads one JSON answer per line on stdout ({"ms": ...} for "time": one shard, wall clock).
# The tasks are the tfjs benchmark's own tasks (same data); parameters are drawn here (PyTorch's
# default U(±1/√fan_in)), which does not change the work done.
#   Standalone check: python bench/torch-reference.py --self-test
import base64
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

BN_EPS = 1e-5
GRADIENT_BASED = ("maml", "fomaml", "reptile", "meta-sgd", "anil")


def threads_from_argv() -> int:
    for i, a in enumerate(sys.argv):
        if a == "--threads":
            return int(sys.argv[i + 1])
    return 2


torch.set_num_threads(threads_from_argv())
torch.manual_seed(3)


def batch_norm(h, gamma, beta, dims):
    # Transductive batch norm from plain ops, as meta/models.ts: batch mean and biased variance.
    mean = h.mean(dim=dims, keepdim=True)
    var = ((h - mean) ** 2).mean(dim=dims, keepdim=True)
    return (h - mean) / torch.sqrt(var + BN_EPS) * gamma + beta


def build(spec):
    """(init params dict, forward(params, x), body(params, x), head(params, features), head keys)
    for a bench/cases.ts model spec; forward(p, x) = head(p, body(p, x)) (ANIL's split)."""
    if spec["kind"] == "mlp":
        sizes, bn = spec["sizes"], spec["batchNorm"]
        layers = len(sizes) - 1
        p = {}
        for l in range(layers):
            bound = 1 / np.sqrt(sizes[l])
            p[f"w{l}"] = torch.empty(sizes[l], sizes[l + 1]).uniform_(-bound, bound)
            p[f"b{l}"] = torch.empty(sizes[l + 1]).uniform_(-bound, bound)
            if bn and l < layers - 1:
                p[f"g{l}"] = torch.ones(sizes[l + 1])
                p[f"be{l}"] = torch.zeros(sizes[l + 1])

        last = layers - 1

        def body(p, x):
            h = x.reshape(x.shape[0], sizes[0])
            for l in range(last):
                h = h @ p[f"w{l}"] + p[f"b{l}"]
                if bn:
                    h = batch_norm(h, p[f"g{l}"], p[f"be{l}"], 0)
                h = F.relu(h)
            return h

        def head(p, f):
            return f @ p[f"w{last}"] + p[f"b{last}"]

        return p, lambda p, x: head(p, body(p, x)), body, head, [f"w{last}", f"b{last}"]
    if spec["kind"] == "conv4":
        H, W, C = spec["inputShape"]
        filt, out, bn = spec["filters"], spec["outputs"], spec["batchNorm"]
        p = {}
        cin = C
        for l in range(4):
            bound = 1 / np.sqrt(9 * cin)
            p[f"c{l}"] = torch.empty(filt, cin, 3, 3).uniform_(-bound, bound)
            p[f"cb{l}"] = torch.empty(filt).uniform_(-bound, bound)
            if bn:
                p[f"g{l}"] = torch.ones(filt)
                p[f"be{l}"] = torch.zeros(filt)
            cin = filt
        h, w = H, W
        for _ in range(4):
            h, w = h // 2, w // 2
        feats = h * w * filt
        bound = 1 / np.sqrt(feats)
        p["dw"] = torch.empty(feats, out).uniform_(-bound, bound)
        p["db"] = torch.empty(out).uniform_(-bound, bound)

        def body(p, x):
            a = x.reshape(x.shape[0], H, W, C).permute(0, 3, 1, 2)
            for l in range(4):
                a = F.conv2d(a, p[f"c{l}"], p[f"cb{l}"], padding=1)
                if bn:
                    a = batch_norm(a, p[f"g{l}"].view(1, -1, 1, 1), p[f"be{l}"].view(1, -1, 1, 1), (0, 2, 3))
                a = F.max_pool2d(F.relu(a), 2)
            # NHWC flatten order, as tfjs (the order does not change the cost).
            return a.permute(0, 2, 3, 1).reshape(a.shape[0], feats)

        def head(p, f):
            return f @ p["dw"] + p["db"]

        if not spec.get("classifier", True):  # the embedding alone (metric learners)
            del p["dw"], p["db"]
            return p, body, body, None, []
        return p, lambda p, x: head(p, body(p, x)), body, head, ["dw", "db"]
    raise ValueError(f"unknown model kind {spec['kind']}")


def criterion(kind):
    """The mean loss of outputs against targets: MSE, or softmax cross-entropy (meta/losses.ts)."""
    if kind == "regression":
        return lambda out, y: ((out - y) ** 2).mean()
    return F.cross_entropy


def make_loss(kind, forward):
    crit = criterion(kind)
    return lambda p, x, y: crit(forward(p, x), y)


# Meta-SGD's step sizes live in the same dict as θ, under "alpha:" + the parameter's name (as
# meta-sgd.ts keeps them under learner/lr/<name>); forward and loss read only θ's names.
ALPHA = "alpha:"


def model_keys(p):
    return [k for k in p if not k.startswith(ALPHA)]


def meta_sgd_step(p, q, g):
    return {k: q[k] - p[ALPHA + k] * g[k] for k in g}


def with_alpha(p, lr):
    """θ plus α = innerLr everywhere (meta-sgd.ts's default alphaInit)."""
    return {**p, **{ALPHA + k: torch.full_like(v, lr) for k, v in p.items()}}


def sub_scaled(p, g, lr):
    return {k: p[k] - lr * g[k] for k in p}


# ---- torch.func + vmap: one function per task, vmapped over the shard --------------------------


def loss_with_aux(f):
    """f's value twice: differentiated, and returned as aux (the query loss tfjs reports)."""

    def g(*a):
        l = f(*a)
        return l, l

    return g


def proto_loss(forward):
    """Prototypical networks (protonet.ts): support and query embedded in one batch, prototypes the
    class means of the support embeddings (sy one-hot [n, ways]), softmax over −‖z_q − c_k‖²."""

    def loss(p, sx, sy, qx, qy):
        ns = sx.shape[0]
        z = forward(p, torch.cat([sx, qx], 0))
        zs, zq = z[:ns], z[ns:]
        protos = (sy.T @ zs) / sy.sum(0)[:, None]
        logits = -((zq[:, None, :] - protos[None, :, :]) ** 2).sum(-1)
        return F.cross_entropy(logits, qy)

    return loss


def vmap_task_fn(algorithm, loss, steps, lr, split):
    def adapt(p, sx, sy):
        for _ in range(steps):
            p = sub_scaled(p, grad(loss)(p, sx, sy), lr)
        return p

    body, head, head_keys, crit = split
    if algorithm == "protonet":
        proto = proto_loss(body)

        def task(p, sx, sy, qx, qy):
            g, l = grad(loss_with_aux(proto), has_aux=True)(p, sx, sy, qx, qy)
            return g, l, l

    elif algorithm == "meta-sgd":

        def task(p, sx, sy, qx, qy):
            pre = loss(p, qx, qy)

            def after(p):
                q = {k: p[k] for k in model_keys(p)}
                for _ in range(steps):
                    q = meta_sgd_step(p, q, grad(loss)(q, sx, sy))
                return loss(q, qx, qy)

            g, post = grad(loss_with_aux(after), has_aux=True)(p)
            return g, pre, post

    elif algorithm == "anil":

        def task(p, sx, sy, qx, qy):
            pre = loss(p, qx, qy)

            def after(p):
                fs = body(p, sx)
                h = {k: p[k] for k in head_keys}
                for _ in range(steps):
                    h = sub_scaled(h, grad(lambda h: crit(head(h, fs), sy))(h), lr)
                return crit(head(h, body(p, qx)), qy)

            g, post = grad(loss_with_aux(after), has_aux=True)(p)
            return g, pre, post

    elif algorithm == "maml":

        def task(p, sx, sy, qx, qy):
            pre = loss(p, qx, qy)  # the pre-adaptation query loss tfjs reports
            g, post = grad(loss_with_aux(lambda q: loss(adapt(q, sx, sy), qx, qy)), has_aux=True)(p)
            return g, pre, post

    elif algorithm == "fomaml":

        def task(p, sx, sy, qx, qy):
            pre = loss(p, qx, qy)
            phi = adapt(p, sx, sy)
            g, post = grad(loss_with_aux(lambda q: loss(q, qx, qy)), has_aux=True)(phi)
            return g, pre, post

    else:

        def task(p, sx, sy, qx, qy):
            pre = loss(p, qx, qy)
            phi = adapt(p, sx, sy)
            return {k: phi[k] - p[k] for k in p}, pre, loss(phi, qx, qy)

    return vmap(task, in_dims=(None, 0, 0, 0, 0))


# ---- one task at a time with torch.autograd (learn2learn's MAML.clone/adapt pattern) ------------


def loop_task(algorithm, loss, steps, lr, split, p, sx, sy, qx, qy):
    keys = list(p)
    with torch.no_grad():
        loss(p, qx, qy)  # pre-adaptation query loss
    body, head, head_keys, crit = split
    if algorithm == "protonet":
        theta = {k: v.detach().requires_grad_() for k, v in p.items()}
        g = torch.autograd.grad(proto_loss(body)(theta, sx, sy, qx, qy), [theta[k] for k in keys])
        return dict(zip(keys, g))
    if algorithm == "meta-sgd":
        theta = {k: v.detach().requires_grad_() for k, v in p.items()}
        phi = {k: theta[k] for k in model_keys(theta)}
        for _ in range(steps):
            g = torch.autograd.grad(loss(phi, sx, sy), list(phi.values()), create_graph=True)
            phi = meta_sgd_step(theta, phi, dict(zip(phi, g)))
        g = torch.autograd.grad(loss(phi, qx, qy), [theta[k] for k in keys])
        return dict(zip(keys, g))
    if algorithm == "anil":
        theta = {k: v.detach().requires_grad_() for k, v in p.items()}
        fs = body(theta, sx)
        h = {k: theta[k] for k in head_keys}
        for _ in range(steps):
            g = torch.autograd.grad(crit(head(h, fs), sy), list(h.values()), create_graph=True)
            h = {k: h[k] - lr * gk for k, gk in zip(h, g)}
        g = torch.autograd.grad(crit(head(h, body(theta, qx)), qy), [theta[k] for k in keys])
        return dict(zip(keys, g))
    if algorithm == "maml":
        theta = {k: v.detach().requires_grad_() for k, v in p.items()}
        phi = theta
        for _ in range(steps):
            g = torch.autograd.grad(loss(phi, sx, sy), [phi[k] for k in keys], create_graph=True)
            phi = {k: phi[k] - lr * gk for k, gk in zip(keys, g)}
        g = torch.autograd.grad(loss(phi, qx, qy), [theta[k] for k in keys])
        return dict(zip(keys, g))
    phi = {k: v.detach() for k, v in p.items()}
    for _ in range(steps):
        phi = {k: v.requires_grad_() for k, v in phi.items()}
        g = torch.autograd.grad(loss(phi, sx, sy), [phi[k] for k in keys])
        phi = {k: (phi[k] - lr * gk).detach() for k, gk in zip(keys, g)}
    if algorithm == "fomaml":
        phi = {k: v.requires_grad_() for k, v in phi.items()}
        g = torch.autograd.grad(loss(phi, qx, qy), [phi[k] for k in keys])
        return dict(zip(keys, g))
    with torch.no_grad():
        loss(phi, qx, qy)
        return {k: phi[k] - p[k] for k in keys}


class Case:
    def __init__(self, req):
        self.kind = req["kind"]
        self.steps = req["innerSteps"]
        self.lr = req["innerLr"]
        self.embedding = not req["spec"].get("classifier", True)
        self.params, forward, body, head, head_keys = build(req["spec"])
        self.loss = make_loss(self.kind, forward)
        self.split = (body, head, head_keys, criterion(self.kind))
        self.alpha_params = with_alpha(self.params, self.lr)
        sx, sy, qx, qy = [], [], [], []
        for t in req["tasks"]:
            sx.append(decode_x(t["sx"], t["sxShape"]))
            qx.append(decode_x(t["qx"], t["qxShape"]))
            sy.append(self.decode_y(t["sy"], t["sxShape"][0]))
            qy.append(self.decode_y(t["qy"], t["qxShape"][0]))
        self.sx, self.sy, self.qx, self.qy = sx, sy, qx, qy
        self.SX, self.SY, self.QX, self.QY = (torch.stack(a) for a in (sx, sy, qx, qy))
        if self.embedding:  # protonet: one-hot support labels for the prototypes
            ways = int(max(int(y.max()) for y in sy)) + 1
            self.sy_onehot = [F.one_hot(y, ways).float() for y in sy]
            self.SYH = torch.stack(self.sy_onehot)
        self.algorithms = ("protonet",) if self.embedding else GRADIENT_BASED
        self.vmapped = {a: vmap_task_fn(a, self.loss, self.steps, self.lr, self.split) for a in self.algorithms}

    def decode_y(self, b64, n):
        raw = base64.b64decode(b64)
        if self.kind == "regression":
            return torch.from_numpy(np.frombuffer(raw, dtype="<f4").copy()).reshape(n, -1)
        return torch.from_numpy(np.frombuffer(raw, dtype="<i4").astype(np.int64))

    def run(self, algorithm, variant):
        """One shard: the per-task contributions summed over the tasks."""
        params = self.alpha_params if algorithm == "meta-sgd" else self.params
        sy, SY = (self.sy_onehot, self.SYH) if algorithm == "protonet" else (self.sy, self.SY)
        if variant == "vmap":
            g, _pre, _post = self.vmapped[algorithm](params, self.SX, SY, self.QX, self.QY)
            return {k: v.sum(0) for k, v in g.items()}
        total = None
        for i in range(len(self.sx)):
            g = loop_task(algorithm, self.loss, self.steps, self.lr, self.split, params, self.sx[i], sy[i], self.qx[i], self.qy[i])
            total = g if total is None else {k: total[k] + g[k] for k in g}
        return total


def decode_x(b64, shape):
    return torch.from_numpy(np.frombuffer(base64.b64decode(b64), dtype="<f4").copy()).reshape(shape)


def serve():
    cases = {}
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        try:
            if req["op"] == "case":
                cases[req["id"]] = Case(req)
                ans = {"ok": True, "torch": torch.__version__, "threads": torch.get_num_threads()}
            elif req["op"] == "time":
                c = cases[req["id"]]
                if "threads" in req:
                    torch.set_num_threads(req["threads"])
                t0 = time.perf_counter()
                out = c.run(req["algorithm"], req["variant"])
                ms = (time.perf_counter() - t0) * 1000
                ans = {"ms": ms, "check": float(sum(v.abs().sum() for v in out.values()))}
            else:
                ans = {"error": f"unknown op {req['op']}"}
        except Exception as e:  # report, let the runner decide
            ans = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(ans) + "\n")
        sys.stdout.flush()


def self_test():
    """vmap and the loop agree on a tiny random case of each model (same contributions)."""
    rng = np.random.default_rng(0)
    for spec, kind, xshape in [
        ({"kind": "mlp", "sizes": [4, 8, 8, 3], "batchNorm": True}, "classification", [6, 4]),
        ({"kind": "conv4", "inputShape": [16, 16, 1], "filters": 4, "outputs": 3, "downsample": "maxpool", "batchNorm": True}, "classification", [6, 16, 16, 1]),
        ({"kind": "conv4", "inputShape": [16, 16, 1], "filters": 4, "outputs": 3, "downsample": "maxpool", "batchNorm": True, "classifier": False}, "classification", [6, 16, 16, 1]),
    ]:
        enc = lambda a: base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()
        tasks = [{"sx": enc(rng.standard_normal(xshape).astype("<f4")), "sxShape": xshape, "sy": enc(rng.integers(0, 3, xshape[0]).astype("<i4")),
                  "qx": enc(rng.standard_normal(xshape).astype("<f4")), "qxShape": xshape, "qy": enc(rng.integers(0, 3, xshape[0]).astype("<i4"))} for _ in range(3)]
        c = Case({"kind": kind, "spec": spec, "innerSteps": 2, "innerLr": 0.1, "tasks": tasks})
        for a in c.algorithms:
            v, l = c.run(a, "vmap"), c.run(a, "loop")
            err = max(float((v[k] - l[k]).abs().max()) for k in v)
            print(f"{spec['kind']} {a}: max |vmap - loop| = {err:.2e}")
            assert err < 1e-4, err


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        self_test()
    else:
        serve()
