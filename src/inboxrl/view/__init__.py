"""The HTML run viewer: ``inboxrl view OUTPUT_DIR`` writes ``OUTPUT_DIR/view/index.html``.

``load`` reads the run's files tolerantly, ``models`` turns trajectories into page models,
``tokens`` finds the tokenizer and renders the token view, ``plots`` draws the SVG curves,
``render`` holds the Jinja2 templates (autoescaped), ``pages`` writes each kind of page,
``build`` drives a (parallel, incremental) build, ``serve`` serves it on 127.0.0.1 and ``cli``
is the verb. See the README section "See a run".
"""
