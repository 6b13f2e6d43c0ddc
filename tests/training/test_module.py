"""The LightningModule's own options that change what a model outputs: flip test-time augmentation."""

from __future__ import annotations

import torch

from fmnist.training.module import Classifier


def test_flip_tta_averages_image_and_mirror_only_outside_training() -> None:
    torch.manual_seed(0)
    module = Classifier("deep", flip_tta=True, channels_last=False)
    x = torch.rand(4, 1, 28, 28)
    module.eval()
    with torch.no_grad():
        plain = module.model(x)
        mirrored = module.model(torch.flip(x, dims=[-1]))
        expected = torch.log((plain.softmax(1) + mirrored.softmax(1)) / 2)
        out = module(x)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(out.exp().sum(1), torch.ones(4), atol=1e-5)  # log-probabilities
    assert not torch.allclose(out, plain.log_softmax(1), atol=1e-5)  # the mirror really counts
    symmetric = (x + torch.flip(x, dims=[-1])) / 2
    with torch.no_grad():
        assert torch.allclose(module(symmetric), module.model(symmetric).log_softmax(1), atol=1e-5)
    module.train()
    torch.manual_seed(1)
    train_out = module(x)
    torch.manual_seed(1)
    assert torch.equal(train_out, module.model(x))  # training sees single views (dropout draws match)


def test_without_flip_tta_eval_output_is_the_models_logits() -> None:
    module = Classifier("deep", channels_last=False).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(module(x), module.model(x))
