"""Embedded demo: train ``kan_cnn_tiny`` on scikit-learn's bundled 8x8 digits and print the test accuracy.

The 1,797 real handwritten digits ship with scikit-learn, so this runs without any download.
"""

from __future__ import annotations

import time

import numpy as np
import timm
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import kanvision  # noqa: F401  (registers the models)


def digits_split(test_size: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Fixed, stratified train/test split of the digits as (N, 1, 8, 8) float tensors scaled to [-1, 1]."""
    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0 - 0.5) / 0.5
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, data.target, test_size=test_size, random_state=seed, stratify=data.target
    )
    as_x = lambda a: torch.from_numpy(a).unsqueeze(1)  # noqa: E731
    return as_x(x_tr), torch.from_numpy(y_tr).long(), as_x(x_te), torch.from_numpy(y_te).long()


def main(epochs: int = 40, batch_size: int = 64, lr: float = 3e-3, seed: int = 0) -> float:
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = digits_split()
    model = timm.create_model("kan_cnn_tiny", num_classes=10, in_chans=1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x_tr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(x_tr)).split(batch_size):
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  ({time.time() - start:.1f} s)")
    model.eval()
    with torch.no_grad():
        acc = (model(x_te).argmax(1) == y_te).float().mean().item()
    print(f"kan_cnn_tiny on digits: test accuracy {acc:.4f} ({len(x_te)} held-out images, {time.time() - start:.1f} s)")
    return acc


if __name__ == "__main__":
    main()
