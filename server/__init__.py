"""The thin FastAPI service over the bionemo_lite core.

    app.py        create_app(settings) / serve(settings)
    settings.py   Settings (BIONEMO_LITE_* variables)
    schemas.py    request and response bodies
    routes/       one router per resource: health, models, embed, score, generate, fold, decode
    backends/     model providers, where models run: inprocess (default) or triton; batcher.py merges embeds
    validation.py checks made before any model work; errors.py / limits.py: error answers, body limit
    preload.py    which models load at start-up (preload, else the cache, else the default model)
    problems.py   why a model cannot be served, without server paths, and the commands that fix it
    request_id.py the X-Request-ID of every request, in error bodies and log lines
"""
