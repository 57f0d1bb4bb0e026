"""Importing and running darnax_core must not pull in torch or Lightning."""

import json
import subprocess
import sys
import textwrap

FORBIDDEN = ("torch", "lightning", "pytorch_lightning", "torchvision")

SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import jax
    import numpy as np
    import optax

    import darnax_core as dc

    cfg = dc.TUTORIAL_09.replace(input_dim=6, hidden=12, num_classes=3, density_j=0.5, density_in=0.5)
    net = dc.paper_model(jax.random.PRNGKey(0), cfg)
    optimizer = dc.paper_model_optimizer(net, cfg)
    step = dc.make_train_step(dc.paper_protocol(cfg), optimizer)
    x = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    net, _, metrics = step(net, dc.init_optimizer(optimizer, net), x, np.array([0, 1, 2, 0]), jax.random.PRNGKey(1))
    predictions, _ = dc.make_eval_step(dc.paper_protocol(cfg))(net, x, jax.random.PRNGKey(2))
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in FORBIDDEN)
    print(json.dumps({"count": int(metrics.count), "predictions": np.asarray(predictions).tolist(), "loaded": loaded}))
    """
)


def test_core_never_imports_torch():
    code = f"FORBIDDEN = {FORBIDDEN!r}\n" + SCRIPT
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["count"] == 4
    assert len(report["predictions"]) == 4
    assert report["loaded"] == [], f"darnax_core pulled in {report['loaded']}"
