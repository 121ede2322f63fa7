from search_spaces.kan.layers.bspline_kan import BSplineKANLayer  # cellar: inline
from search_spaces.kan.layers.chebyshev_kan import ChebyshevKANLayer  # cellar: inline
from search_spaces.kan.layers.kan_layer import KANLayer  # cellar: inline
from search_spaces.kan.layers.mixture_kan import MixtureKANLayer  # cellar: inline
from search_spaces.kan.layers.rbf_kan import RBFKANLayer  # cellar: inline

# Every KAN layer takes (in_features, out_features, **basis arguments).
KAN_LAYERS = {
    "bspline": BSplineKANLayer,
    "rbf": RBFKANLayer,
    "cheb": ChebyshevKANLayer,
    "mix": MixtureKANLayer,
}


def kan_layer_resolver(basis: str, in_features: int, out_features: int, **kwargs: object) -> KANLayer:
    """The KAN layer for a basis name; a wrong name lists the valid ones."""
    try:
        layer = KAN_LAYERS[basis]
    except KeyError:
        raise ValueError(f"unknown KAN basis {basis!r}; choose one of: {', '.join(KAN_LAYERS)}") from None
    return layer(in_features, out_features, **kwargs)
