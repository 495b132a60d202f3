"""The classifier head that the model families share: `reset_classifier`, `forward_head` and `construct`."""
from mindspore import Tensor, nn

from .layers import init_weights


class ClassifierHeadMixin:
    """For an `nn.Cell` (list it before the Cell base) with `forward_features`, `num_features`, `global_pool`
    (a `layers.GlobalAvgPool`), `flatten` and `dropout`: `construct` is `forward_head(forward_features(x))`, and
    the head is global average pool → flatten → dropout → classifier. The classifier is the attribute named
    `classifier_attr`, which fixes its parameter names (`fc.weight`).
    """

    classifier_attr = "classifier"

    def make_classifier(self, num_classes: int) -> nn.Cell:
        """A new classifier; nn.Identity for `num_classes` 0 (the model then returns the pooled features)."""
        return nn.Dense(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        setattr(self, self.classifier_attr, self.make_classifier(num_classes))
        self.init_classifier()

    def init_classifier(self) -> None:
        """Re-initialise the classifier's weights in place (the model's init); loaders call it for fine-tuning."""
        init_weights(getattr(self, self.classifier_attr))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.flatten(self.global_pool(x))
        if pre_logits:
            return x
        return getattr(self, self.classifier_attr)(self.dropout(x))

    def construct(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
