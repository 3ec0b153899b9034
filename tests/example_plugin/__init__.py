"""A tiny third-party plugin, written from docs/plugin-hooks.md alone.

It proves the contract end to end: a guarded route with its own template and static
file, a permission, a menu link, a table with a migration, an event type and a handler,
a CLI command, a patient section, a GDPR contribution, a KPI and a research field.
"""

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, Template

from core.contributions import KPI, ResearchField
from core.events import Event, EventType
from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import MenuLink, Section, page


@hookimpl
def register_permissions():
    return [Permission("example.hello", "See the example greeting", default_roles=("hp", "coordinator"))]


@hookimpl
def register_piccolo_apps():
    return ["tests.example_plugin.piccolo_app"]


@hookimpl
def register_event_types():
    return [EventType("example.greeted", "Someone opened the example greeting")]


@hookimpl
def menu_links(actor):
    return [MenuLink("Example", "/example/hello", "example.hello", order=70)]


@hookimpl
def patient_sections(patient, actor):
    return [Section("example", "Example", f"/example/patients/{patient}", "example.hello")]


@hookimpl
def panel_sections(panel, actor):
    return [Section("example-panel", "Example panel tab", f"/example/panels/{panel.id}", "example.hello")]


@get("/example/panels/{panel_id:int}", opt={"permission": "example.hello"}, include_in_schema=False)
async def panel_section(request: Request, panel_id: FromPath[int]) -> Template:
    """The panel-page tab: members see the nickname only, through the core's access rule."""
    from core.panels.access import load_panel

    ctx = await load_panel(request, panel_id)
    return Template("example/_section.html", context={"nickname": ctx.patient["nickname"]})


@get("/example/hello", opt={"permission": "example.hello"}, include_in_schema=False)
async def hello(request: Request) -> Template:
    from tests.example_plugin.tables import ExampleNote

    actor = request.scope["user"]
    await request.app.state.host.events.emit(Event("example.greeted", actor.user_id, "example", "hello"))
    notes = await ExampleNote.select().order_by(ExampleNote.id)
    return page(request, "example/hello.html", {"notes": notes}, fragment="example/_notes.html")


@get("/example/patients/{pseudonym:str}", opt={"permission": "example.hello"}, include_in_schema=False)
async def patient_section(request: Request, pseudonym: FromPath[str]) -> Template:
    """The patient-page tab: the plugin checks access itself, through the core's rule."""
    from core.patients.access import load_patient

    patient = await load_patient(request, pseudonym)
    return Template("example/_section.html", context={"nickname": patient["nickname"]})


CODES = [("ORPHA", "98756", "Spinocerebellar ataxia type 2"), ("ORPHA", "95", "Friedreich ataxia")]


@hookimpl
def code_search_url(kind):
    return "/example/codes" if kind == "diagnoses" else None


@get("/example/codes", opt={"permission": "example.hello"}, include_in_schema=False, media_type="text/html")
async def code_suggestions(label: FromQuery[str] = "") -> str:
    from html import escape

    hits = [c for c in CODES if label and label.lower() in c[2].lower()]
    return "".join(f'<option value="{escape(s)}:{escape(c)} {escape(t)}"></option>' for s, c, t in hits)


@get("/example/boom", opt={"permission": "example.hello"}, include_in_schema=False)
async def boom() -> str:
    raise RuntimeError("secret internal detail /etc/passwd SELECT * FROM identity_user")


@get("/example/live", opt={"authenticated": True}, include_in_schema=False)
async def live_stream(request: Request) -> ServerSentEvent:
    """Live updates (docs/live-updates.md): notes posted to the "example" channel, as HTML."""
    from html import escape

    from core.live import sse_response

    async def render(payload):
        text = payload.get("text")
        return ("note", f"<p>{escape(text)}</p>") if isinstance(text, str) else None

    return sse_response(request, "example", render)


@post("/example/live", opt={"authenticated": True}, include_in_schema=False, status_code=204)
async def live_post(request: Request) -> None:
    from core.live import publish

    form = await request.form()
    await publish(request, "example", {"text": str(form.get("text", ""))[:1000]})


@hookimpl
def register_routes():
    return [hello, patient_section, panel_section, code_suggestions, boom, live_stream, live_post]


@hookimpl
async def handle_event(event):
    from tests.example_plugin.tables import ExampleNote

    if event.name == "example.greeted":
        await ExampleNote.insert(ExampleNote(text=f"greeted by user {event.actor_id}"))


@hookimpl
def register_commands(cli):
    import click

    @cli.command("example-hello", help="Say hello from the example plugin.")
    def example_hello():
        click.echo("hello from the example plugin")


@hookimpl
def gdpr_export(patient):
    return {"example": {"patient": str(patient), "notes": []}}


@hookimpl
def register_kpis():
    return [KPI("example.greetings", "How many greetings were shown", lambda ctx: 0)]


@hookimpl
def register_research_fields():
    return [ResearchField("example.flag", "An example research field", lambda record: False)]


@hookimpl
async def load_demo_data(ctx):
    from tests.example_plugin.tables import ExampleNote

    await ExampleNote.insert(ExampleNote(text=f"demo note for {len(ctx.users)} users"))


@hookimpl
def extra_template_vars(request):
    return {"example_banner": "example plugin active"}
