"""The shapes world (lesson 01): scenes and their graphs, rendering, captions, data sets, and the oracle.

`scenes` defines the vocabulary, scene graphs, relations and the sampler; `render` draws them;
`captions` writes and parses captions; `data` makes captioned data sets for every model; `oracle`
(with `shapefit`) reads a scene graph off any picture and checks a caption against it, and
`artefacts` and `eyes` audit it. Everything else in the package builds on this.
"""
