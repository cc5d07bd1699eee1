"""convkit.analysis: what a network learned, in pictures and numbers.

- filters: plot_filters (first-layer RGB/grey grids, higher layers per input channel),
  activation_maps / plot_activation_maps
- features: extract_features (any named layer, default the penultimate "FC7"), penultimate_layer
- neighbors: nearest_neighbors, precision_at_k, knn_accuracy
- embed: PCA, pca, tsne (openTSNE or scikit-learn)
- occlusion: occlusion maps [N, H, W] for any network or callable returning logits
- saliency: saliency maps [N, H, W] and raw input gradients (convkit networks)
- sanity: rank_correlation, randomize_weights (Adebayo et al. model randomization)
- plots: overlay, filter_grid, thumbnail_map and the PNG figures
- report: analyze(...) (the `convkit analyze` command)

Conventions follow Captum where users expect them (target as int / list / array / None = predicted;
sliding_window_shapes / strides / baselines accepted as aliases).
"""
from .embed import PCA, pca, tsne
from .features import activations, extract_features, get_layer, penultimate_layer
from .filters import activation_maps, layer_weight, plot_activation_maps, plot_filters
from .neighbors import knn_accuracy, nearest_neighbors, precision_at_k
from .occlusion import occlusion
from .plots import filter_grid, overlay, plot_attributions, plot_embedding, plot_neighbors, thumbnail_map
from .saliency import input_gradients, saliency
from .sanity import randomize_weights, rank_correlation

__all__ = ["PCA", "activation_maps", "activations", "extract_features", "filter_grid", "get_layer",
           "input_gradients", "knn_accuracy", "layer_weight", "nearest_neighbors", "occlusion", "overlay", "pca",
           "penultimate_layer", "plot_activation_maps", "plot_attributions", "plot_embedding", "plot_filters",
           "plot_neighbors", "precision_at_k", "randomize_weights", "rank_correlation", "saliency", "thumbnail_map",
           "tsne"]
