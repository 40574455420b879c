"""The panoptic result that travels from postprocess (panoptic YOLACT or PCV) to the node:
`PanopticResult` (an id map and its `Segments`), defined with the rest of the result vocabulary
in `segmentation_ros.structures.segments` and re-exported here.

Category convention (stated once): a panoptic model has `stuff_names` (S) and `thing_names` (T);
panoptic category ids are 0..S-1 for stuff and S..S+T-1 for things, the same order as the semantic
head's channels. A YOLACT thing class c (0-based) is panoptic category S + c.
Segment ids are 1..N within one image; id 0 in the id map is void / unknown.
"""

from segmentation_ros.structures.segments import PanopticResult, Segments

__all__ = ["PanopticResult", "Segments"]
