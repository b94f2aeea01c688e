"""The thin FastAPI service over the bionemo_lite core.

    app.py        create_app(settings) / serve(settings)
    settings.py   Settings (BIONEMO_LITE_* variables)
    schemas.py    request and response bodies
    routes/       one router per resource: health, models, embed, score, generate, fold, decode
    backends/     where models run: inprocess (default) or triton
    validation.py checks made before any model work; errors.py / limits.py: error answers, body limit
"""
