"""SAM from ``segment_anything``'s modules, built by ``wps_sam.modeling.sam_builder``.

Proves: a tiny SAM builds and runs end to end (image encoder -> prompt encoder with boxes -> mask
decoder -> masks at the original size), and the step-by-step path equals ``Sam.forward``;
checkpoints round-trip; a missing, foreign or wrong-architecture checkpoint raises
``SamCheckpointError`` with a message that says what is wrong and what to do.
"""

import dataclasses

import pytest
import torch

import wps_sam  # noqa: F401  isort:skip
from detectron2.config import get_cfg
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from wps_sam import add_wps_sam_config
from wps_sam.modeling.sam_builder import (
    SamArchitecture,
    SamCheckpointError,
    build_sam,
    build_sam_from_cfg,
    load_sam_checkpoint,
    sam_architecture_from_cfg,
)

VIT_B_URL = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"


@pytest.fixture(scope="module")
def vit_b():
    """An official-size ViT-B SAM with random weights (about 1 s to build on CPU), built once."""
    arch = SamArchitecture(variant="vit_b")
    return arch, build_sam(arch)


def _build(arch, seed=0, checkpoint=None):
    torch.manual_seed(seed)
    return build_sam(arch, checkpoint).eval()


def test_tiny_sam_architecture(tiny_sam_arch):
    sam = _build(tiny_sam_arch)
    assert isinstance(sam, Sam)
    encoder = sam.image_encoder
    assert encoder.img_size == 128
    assert encoder.patch_embed.proj.weight.shape == (32, 3, 16, 16)
    assert [block.window_size for block in encoder.blocks] == [4, 0]  # 0 = global attention
    assert sam.prompt_encoder.image_embedding_size == (8, 8)
    assert sam.mask_decoder.transformer.layers[0].mlp.lin1.out_features == 64
    assert tiny_sam_arch.embedding_size == 8


def test_tiny_sam_runs_end_to_end(tiny_sam_arch):
    sam = _build(tiny_sam_arch)
    original_size = (48, 64)
    transform = ResizeLongestSide(tiny_sam_arch.image_size)
    image = torch.randint(0, 256, (*original_size, 3), dtype=torch.uint8).numpy()
    resized = torch.as_tensor(transform.apply_image(image)).permute(2, 0, 1).float()
    assert resized.shape == (3, 96, 128)  # longest side = IMAGE_SIZE, not padded
    boxes = transform.apply_boxes_torch(
        torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 44.0]]), original_size
    )
    torch.testing.assert_close(boxes[0], torch.tensor([8.0, 12.0, 60.0, 80.0]))

    with torch.no_grad():
        embedding = sam.image_encoder(sam.preprocess(resized[None]))
        assert embedding.shape == (1, 256, 8, 8)
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        assert sparse.shape == (2, 2, 256)  # a box is two corner tokens
        assert dense.shape == (2, 256, 8, 8)
        image_pe = sam.prompt_encoder.get_dense_pe()
        assert image_pe.shape == (1, 256, 8, 8)
        low_res, iou = sam.mask_decoder(
            image_embeddings=embedding,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        assert low_res.shape == (2, 1, 32, 32) and iou.shape == (2, 1)
        multi, multi_iou = sam.mask_decoder(
            image_embeddings=embedding,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        assert multi.shape == (2, 3, 32, 32) and multi_iou.shape == (2, 3)
        masks = sam.postprocess_masks(low_res, tuple(resized.shape[-2:]), original_size)
        assert masks.shape == (2, 1, *original_size)
        assert torch.isfinite(masks).all() and torch.isfinite(iou).all()

        # Sam.forward does the same steps.
        batched = [{"image": resized, "original_size": original_size, "boxes": boxes}]
        (out,) = sam(batched, multimask_output=False)
    assert out["masks"].dtype == torch.bool and out["masks"].shape == (2, 1, *original_size)
    torch.testing.assert_close(out["low_res_logits"], low_res)
    torch.testing.assert_close(out["iou_predictions"], iou)
    # Thresholded masks agree wherever the logit is not within float noise of the threshold (the
    # two paths may sum in another order; a logit at the threshold can flip).
    sure = (masks - sam.mask_threshold).abs() > 1e-4
    assert sure.float().mean() > 0.99
    assert torch.equal(out["masks"][sure], (masks > sam.mask_threshold)[sure])


@pytest.mark.parametrize("wrapped", [False, True], ids=["state-dict", "model-key"])
def test_checkpoint_round_trip(tiny_sam_arch, tmp_path, wrapped):
    saved = _build(tiny_sam_arch, seed=1)
    path = tmp_path / "tiny_sam.pth"
    state = saved.state_dict()
    torch.save({"model": state} if wrapped else state, path)

    loaded = _build(tiny_sam_arch, seed=2, checkpoint=str(path))
    other = _build(tiny_sam_arch, seed=2)
    assert not torch.equal(other.mask_decoder.iou_token.weight, saved.mask_decoder.iou_token.weight)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_missing_official_checkpoint_names_file_and_url(vit_b, tmp_path):
    arch, sam = vit_b
    path = str(tmp_path / "sam_vit_b_01ec64.pth")
    with pytest.raises(SamCheckpointError) as info:
        load_sam_checkpoint(sam, path, arch)
    message = str(info.value)
    assert path in message and VIT_B_URL in message and "MODEL.SAM.CHECKPOINT" in message


def test_missing_custom_checkpoint_names_file(tiny_sam_arch, tmp_path):
    path = str(tmp_path / "no_such_tiny_sam.pth")
    with pytest.raises(SamCheckpointError, match="SAM checkpoint not found") as info:
        build_sam(tiny_sam_arch, checkpoint=path)
    assert path in str(info.value)


def test_checkpoint_of_another_custom_size(tiny_sam_arch, tmp_path):
    path = tmp_path / "tiny_dim32.pth"
    torch.save(_build(tiny_sam_arch).state_dict(), path)
    wider = dataclasses.replace(tiny_sam_arch, encoder_embed_dim=48)
    with pytest.raises(SamCheckpointError) as info:
        build_sam(wider, checkpoint=str(path))
    message = str(info.value)
    assert "encoder dim 32" in message and "encoder dim 48" in message
    assert str(path) in message and "MODEL.SAM.VARIANT" in message


def test_checkpoint_of_another_image_size(tiny_sam_arch, tmp_path):
    path = tmp_path / "tiny_128.pth"
    torch.save(_build(tiny_sam_arch).state_dict(), path)
    smaller = dataclasses.replace(tiny_sam_arch, image_size=64)
    with pytest.raises(SamCheckpointError, match="differ in shape") as info:
        build_sam(smaller, checkpoint=str(path))
    assert "embedding 8x8" in str(info.value) and "image 64" in str(info.value)


def test_custom_checkpoint_into_vit_b(vit_b, tiny_sam_arch, tmp_path):
    arch, sam = vit_b
    path = tmp_path / "tiny_dim32.pth"
    torch.save(_build(tiny_sam_arch).state_dict(), path)
    with pytest.raises(SamCheckpointError) as info:
        load_sam_checkpoint(sam, str(path), arch)
    message = str(info.value)
    assert "custom (encoder dim 32, depth 2" in message
    assert "vit_b (image 1024, encoder dim 768, depth 12" in message


def _text_file(path):
    path.write_text("this is not a checkpoint\n")


def _foreign_state_dict(path):
    torch.save({"backbone.conv1.weight": torch.zeros(8, 3, 3, 3)}, path)


def _list_of_tensors(path):
    torch.save([torch.zeros(3)], path)


@pytest.mark.parametrize(
    "write, expected",
    [
        (_text_file, "Could not read SAM checkpoint"),
        (_foreign_state_dict, "is not a SAM state dict"),
        (_list_of_tensors, "is not a SAM state dict"),
    ],
    ids=["text-file", "detector-state-dict", "list"],
)
def test_non_sam_file(tiny_sam_arch, tmp_path, write, expected):
    path = tmp_path / "not_sam.pth"
    write(path)
    with pytest.raises(SamCheckpointError, match=expected) as info:
        build_sam(tiny_sam_arch, checkpoint=str(path))
    assert str(path) in str(info.value)


def test_pickled_module_is_refused(tiny_sam_arch, tmp_path):
    """A whole pickled model (not a state dict) is not unpickled (weights_only) but explained."""
    path = tmp_path / "whole_model.pth"
    torch.save(_build(tiny_sam_arch), path)
    with pytest.raises(SamCheckpointError, match="Refused to load SAM checkpoint .* pickled"):
        build_sam(tiny_sam_arch, checkpoint=str(path))


def test_extra_keys_are_refused(tiny_sam_arch, tmp_path):
    state = _build(tiny_sam_arch).state_dict()
    state["image_encoder.extra_head.weight"] = torch.zeros(2)
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    with pytest.raises(SamCheckpointError, match="image_encoder.extra_head.weight"):
        build_sam(tiny_sam_arch, checkpoint=str(path))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"variant": "vit_s"}, "Unknown SAM variant"),
        ({"variant": "custom", "image_size": 100}, "not a multiple of patch size"),
        ({"variant": "custom", "encoder_depth": 2}, "outside an encoder of depth 2"),
    ],
)
def test_invalid_architectures(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        SamArchitecture(**kwargs)


def test_official_variant_ignores_custom_sizes():
    arch = SamArchitecture(variant="vit_b", encoder_embed_dim=32, encoder_depth=2)
    assert (arch.encoder_embed_dim, arch.encoder_depth, arch.encoder_num_heads) == (768, 12, 12)
    assert arch.encoder_global_attn_indexes == [2, 5, 8, 11]


def test_build_from_cfg(tiny_sam_arch):
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.MODEL.SAM.VARIANT = "custom"
    cfg.MODEL.SAM.IMAGE_SIZE = 128
    cfg.MODEL.SAM.ENCODER_EMBED_DIM = 32
    cfg.MODEL.SAM.ENCODER_DEPTH = 2
    cfg.MODEL.SAM.ENCODER_NUM_HEADS = 2
    cfg.MODEL.SAM.ENCODER_GLOBAL_ATTN_INDEXES = [1]
    cfg.MODEL.SAM.ENCODER_WINDOW_SIZE = 4
    cfg.MODEL.SAM.DECODER_MLP_DIM = 64
    assert sam_architecture_from_cfg(cfg) == tiny_sam_arch
    sam = build_sam_from_cfg(cfg)  # CHECKPOINT "" = random weights
    assert sam.image_encoder.patch_embed.proj.weight.shape == (32, 3, 16, 16)
