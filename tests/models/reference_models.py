"""Reference networks for pneumo's models tests and training benchmark, the Python way:
torchvision's architectures and segmentation_models_pytorch's U-Net and UNet++ themselves; the
encoders' stages as smp takes them from torchvision's modules. No package holds Attention U-Net
or Double U-Net, so those two are transcribed here: Attention U-Net with AttU_Net's names,
Double U-Net (the paper's Keras model in PyTorch) with pneumo's.

usage: reference_models.py OUT_DIR

For each case writes OUT_DIR/<case>.weights.pth (torch.save of a dict of tensors) and
OUT_DIR/<case>.io.pth (a dict: input, out0..outN, parameters = parameter count).
"""
import sys

import safetensors.torch
import segmentation_models_pytorch as smp
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def randomise_batch_norm(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.2, 0.2, generator=g)
            m.num_batches_tracked.fill_(7)


# --- smp encoder stages over torchvision models -------------------------------------------

def resnet_stages(m, x):
    out = [x]
    x = m.relu(m.bn1(m.conv1(x)))
    out.append(x)
    x = m.layer1(m.maxpool(x))
    out.append(x)
    for layer in (m.layer2, m.layer3, m.layer4):
        x = layer(x)
        out.append(x)
    return out


def vgg_stages(m, x):
    out = []
    for module in m.features:
        if isinstance(module, nn.MaxPool2d):
            out.append(x)
        x = module(x)
    out.append(x)
    return out


def efficientnet_stages(m, x):
    f = m.features
    out = [x]
    for group in ((0, 1), (2,), (3,), (4, 5), (6, 7)):
        for i in group:
            x = f[i](x)
        out.append(x)
    return out


def densenet_stages(m, x):
    f = m.features
    out = [x]
    x = f.relu0(f.norm0(f.conv0(x)))
    out.append(x)
    x = f.pool0(x)
    for block, transition in ((f.denseblock1, f.transition1), (f.denseblock2, f.transition2),
                              (f.denseblock3, f.transition3)):
        x = block(x)
        skip = transition.relu(transition.norm(x))
        out.append(skip)
        x = transition.pool(transition.conv(skip))
    out.append(f.norm5(f.denseblock4(x)))
    return out


# --- U-Net and UNet++: segmentation_models_pytorch itself -------------------------------------

def Unet(attention=None, aux=False):
    """smp's U-Net over ResNet34 (random weights): scSE attention or none, optionally its
    auxiliary classification head. Returns the mask logits, or (masks, logits) with the head."""
    return smp.Unet("resnet34", encoder_weights=None, decoder_attention_type=attention,
                    aux_params={"classes": 1} if aux else None)


def UnetPlusPlus():
    return smp.UnetPlusPlus("resnet34", encoder_weights=None)


def outputs(result):
    """An smp network's result, or a transcribed one's list, as a list of tensors."""
    return list(result) if isinstance(result, (list, tuple)) else [result]


class ResNetEncoder(torchvision.models.ResNet):
    def __init__(self, block, layers):
        super().__init__(block, layers)
        del self.fc
        del self.avgpool

    def forward(self, x):
        return resnet_stages(self, x)


# --- Attention U-Net (Oktay et al.), names as the common AttU_Net implementation --------------

def conv_block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = conv_block(cin, cout)

    def forward(self, x):
        return self.conv(x)


class UpConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, padding=1),
                                nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.up(x)


class AttentionBlock(nn.Module):
    def __init__(self, gating, skip, inner):
        super().__init__()
        self.W_g = nn.Sequential(nn.Conv2d(gating, inner, 1), nn.BatchNorm2d(inner))
        self.W_x = nn.Sequential(nn.Conv2d(skip, inner, 1), nn.BatchNorm2d(inner))
        self.psi = nn.Sequential(nn.Conv2d(inner, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g, x):
        return x * self.psi(F.relu(self.W_g(g) + self.W_x(x)))


class AttentionUnet(nn.Module):
    """encoder "plain" (AttU_Net's five conv blocks, widths finest first) or "resnet34" (smp's
    stages, then one more up level without a skip back to the input's resolution)."""

    def __init__(self, encoder="resnet34", widths=(16, 32, 64, 128, 256)):
        super().__init__()
        self.plain = encoder == "plain"
        if self.plain:
            cin = 3
            for i, w in enumerate(widths):
                setattr(self, f"Conv{i + 1}", ConvBlock(cin, w))
                cin = w
            skips, bottom = list(widths[:4]), widths[4]
        else:
            self.encoder = ResNetEncoder(torchvision.models.resnet.BasicBlock, [3, 4, 6, 3])
            skips, bottom = [64, 64, 128, 256], 512
        cin = bottom
        for level in range(4, 0, -1):
            skip, n = skips[level - 1], level + 1
            setattr(self, f"Up{n}", UpConv(cin, skip))
            setattr(self, f"Att{n}", AttentionBlock(skip, skip, max(skip // 2, 1)))
            setattr(self, f"Up_conv{n}", ConvBlock(2 * skip, skip))
            cin = skip
        if not self.plain:
            self.Up1 = UpConv(cin, cin // 2)
            self.Up_conv1 = ConvBlock(cin // 2, cin // 2)
            cin //= 2
        self.Conv_1x1 = nn.Conv2d(cin, 1, 1)

    def forward(self, x):
        if self.plain:
            skips, y = [], x
            for i in range(5):
                if i > 0:
                    y = F.max_pool2d(y, 2, 2)
                y = getattr(self, f"Conv{i + 1}")(y)
                skips.append(y)
            skips = skips[:4]
        else:
            features = self.encoder(x)
            skips, y = features[1:5], features[5]
        for level in range(4, 0, -1):
            n = level + 1
            d = getattr(self, f"Up{n}")(y)
            y = getattr(self, f"Up_conv{n}")(torch.cat([getattr(self, f"Att{n}")(d, skips[level - 1]), d], 1))
        if not self.plain:
            y = self.Up_conv1(self.Up1(y))
        return [self.Conv_1x1(y)]


# --- Double U-Net (Jha et al. 2020, the paper's Keras model), names pneumo's own ---------------

class SqueezeExcite(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c, max(c // 8, 1), bias=False)
        self.fc2 = nn.Linear(max(c // 8, 1), c, bias=False)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class DoubleConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout)

    def forward(self, x):
        return self.se(F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))))


class Aspp(nn.Module):
    def __init__(self, cin, filters):
        super().__init__()
        self.pool_conv, self.pool_bn = nn.Conv2d(cin, filters, 1), nn.BatchNorm2d(filters)
        for i, d in enumerate((1, 6, 12, 18)):
            k = 1 if i == 0 else 3
            setattr(self, f"branch{i + 1}", nn.Conv2d(cin, filters, k, dilation=d, padding=0 if i == 0 else d, bias=False))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(filters))
        self.project, self.project_bn = nn.Conv2d(5 * filters, filters, 1, bias=False), nn.BatchNorm2d(filters)

    def forward(self, x):
        pooled = F.relu(self.pool_bn(self.pool_conv(x.mean((2, 3), keepdim=True))))
        parts = [pooled.expand(-1, -1, x.shape[2], x.shape[3])]
        parts += [F.relu(getattr(self, f"bn{i}")(getattr(self, f"branch{i}")(x))) for i in range(1, 5)]
        return F.relu(self.project_bn(self.project(torch.cat(parts, 1))))


class VggEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torchvision.models.vgg19().features

    def forward(self, x):
        return vgg_stages(self, x)[:5]


def upsample2(x):
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class DoubleUnet(nn.Module):
    def __init__(self):
        super().__init__()
        c, decoder, encoder2 = (64, 128, 256, 512, 512), (256, 128, 64, 32), (32, 64, 128, 256)
        self.encoder1 = VggEncoder()
        self.aspp1 = Aspp(c[4], 64)
        ins = [64] + list(decoder[:3])
        self.decoder1 = nn.ModuleList([DoubleConvBlock(ins[i] + c[3 - i], decoder[i]) for i in range(4)])
        self.output1 = nn.Conv2d(32, 1, 1)
        self.encoder2 = nn.ModuleList([DoubleConvBlock(cin, cout) for cin, cout in zip((3,) + encoder2[:3], encoder2)])
        self.aspp2 = Aspp(encoder2[3], 64)
        self.decoder2 = nn.ModuleList([DoubleConvBlock(ins[i] + c[3 - i] + encoder2[3 - i], decoder[i]) for i in range(4)])
        self.output2 = nn.Conv2d(32, 1, 1)

    def forward(self, x):
        f = self.encoder1(x)
        y = self.aspp1(f[4])
        for i in range(4):
            y = self.decoder1[i](torch.cat([upsample2(y), f[3 - i]], 1))
        mask1 = self.output1(y)
        y = x * torch.sigmoid(mask1[:, :1])
        skips = []
        for block in self.encoder2:
            y = block(y)
            skips.append(y)
            y = F.max_pool2d(y, 2, 2)
        y = self.aspp2(y)
        for i in range(4):
            y = self.decoder2[i](torch.cat([upsample2(y), f[3 - i], skips[3 - i]], 1))
        return [self.output2(y), mask1]


def save(out_dir, name, model, outputs, x, drop=()):
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(drop)} if drop else dict(model.state_dict())
    count = sum(v.numel() for k, v in model.named_parameters() if not (drop and k.startswith(drop)))
    torch.save(state, f"{out_dir}/{name}.weights.pth")
    io = {"input": x, "parameters": torch.tensor(count)}
    for i, o in enumerate(outputs):
        io[f"out{i}"] = o.detach()
    torch.save(io, f"{out_dir}/{name}.io.pth")


def main():
    out_dir = sys.argv[1]
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    encoders = {
        "resnet18": (torchvision.models.resnet18, resnet_stages, ("fc.",)),
        "resnet34": (torchvision.models.resnet34, resnet_stages, ("fc.",)),
        "resnet50": (torchvision.models.resnet50, resnet_stages, ("fc.",)),
        "vgg19": (torchvision.models.vgg19, vgg_stages, ("classifier.",)),
        "vgg19_bn": (torchvision.models.vgg19_bn, vgg_stages, ("classifier.",)),
        "densenet121": (torchvision.models.densenet121, densenet_stages, ("classifier.",)),
        **{f"efficientnet-b{b}": (getattr(torchvision.models, f"efficientnet_b{b}"), efficientnet_stages,
                                  ("classifier.", "features.8.")) for b in range(5)},
    }
    with torch.no_grad():
        for name, (make, stages, drop) in encoders.items():
            model = make()
            randomise_batch_norm(model)
            model.eval()
            save(out_dir, name, model, stages(model, x), x, drop)

        # One channel: 3-channel weights summed into the first convolution.
        model = torchvision.models.resnet18()
        randomise_batch_norm(model)
        model.eval()
        state = dict(model.state_dict())
        grey = x[:, :1]
        model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        model.conv1.weight.copy_(state["conv1.weight"].sum(1, keepdim=True))
        io = {"input": grey}
        for i, o in enumerate(resnet_stages(model, grey)):
            io[f"out{i}"] = o
        torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, f"{out_dir}/resnet18_grey.weights.pth")
        torch.save(io, f"{out_dir}/resnet18_grey.io.pth")

        # The CheXNet-style classifier: torchvision's DenseNet121 with a 1-logit head.
        model = torchvision.models.densenet121(num_classes=1)
        randomise_batch_norm(model)
        model.eval()
        save(out_dir, "classifier", model, [model(x)], x)

        # U-Net, resnet34, scSE attention and an auxiliary head.
        model = Unet("scse", True)
        randomise_batch_norm(model)
        model.eval()
        save(out_dir, "unet_resnet34", model, outputs(model(x)), x)

        # The same weights as a training script saves them: nested, with DataParallel prefixes;
        # and as `torch.save(model.state_dict())` writes them (an OrderedDict with _metadata).
        torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 3},
                   f"{out_dir}/unet_nested.pth")
        torch.save(model.state_dict(), f"{out_dir}/unet_ordered.pth")
        torch.save(model.state_dict(), f"{out_dir}/unet_legacy.pth", _use_new_zipfile_serialization=False)
        safetensors.torch.save_file(model.state_dict(), f"{out_dir}/unet.safetensors")

        # UNet++ (Nested U-Net), resnet34, no attention, no auxiliary head.
        model = UnetPlusPlus()
        randomise_batch_norm(model)
        model.eval()
        save(out_dir, "unetpp_resnet34", model, outputs(model(x)), x)

        # Attention U-Net: AttU_Net's plain encoder (narrow widths), and over ResNet34.
        for name, model in (("attention_unet_plain", AttentionUnet("plain", (8, 16, 32, 64, 128))),
                            ("attention_unet_resnet34", AttentionUnet("resnet34"))):
            randomise_batch_norm(model)
            model.eval()
            save(out_dir, name, model, model(x), x)

        # Double U-Net over VGG19: the final mask, then the first network's.
        model = DoubleUnet()
        randomise_batch_norm(model)
        model.eval()
        save(out_dir, "double_unet_vgg19", model, model(x), x)


if __name__ == "__main__":
    main()
