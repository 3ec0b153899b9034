from pathlib import Path

from piccolo.conf.apps import AppConfig

from core.orgs.tables import Ern, Hcp, HcpErn

APP_CONFIG = AppConfig(
    app_name="orgs",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[Ern, Hcp, HcpErn],
)
