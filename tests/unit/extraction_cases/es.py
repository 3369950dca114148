"""Spanish: numbers in words and digits, units, changes ("mejor 3") and removals ("quita")."""

from wa_sessions.orders.models import OrderDetails, OrderItem

ORDER = OrderDetails(
    items=[
        OrderItem(name="manzanas", quantity=2, unit="cajas"),
        OrderItem(name="Producto A", quantity=5, unit="unidades"),
    ]
)
ADDS = [
    ("Hola, necesito 5 unidades del Producto A", [("add", "Producto A", 5, "unidades")]),
    ("Necesito cinco unidades del Producto A", [("add", "Producto A", 5, "unidades")]),
    ("Quiero dos pizzas", [("add", "pizzas", 2, None)]),
    ("tres cajas de manzanas", [("add", "manzanas", 3, "cajas")]),
    ("Me das una docena de huevos", [("add", "huevos", 12, None)]),
    ("media docena de empanadas por favor", [("add", "empanadas", 6, None)]),
    ("4 botellas de agua", [("add", "agua", 4, "botellas")]),
    ("quiero 2 kilos de papas", [("add", "papas", 2, "kilos")]),
    ("siete latas de cerveza", [("add", "cerveza", 7, "latas")]),
    ("ocho tacos al pastor", [("add", "tacos al pastor", 8, None)]),
    ("nueve paquetes de galletas", [("add", "galletas", 9, "paquetes")]),
    ("diez bolsas de hielo", [("add", "hielo", 10, "bolsas")]),
    ("once empanadas de carne", [("add", "empanadas de carne", 11, None)]),
    ("quince panes", [("add", "panes", 15, None)]),
    ("veinte piezas de sushi", [("add", "sushi", 20, "piezas")]),
    ("una pizza margarita", [("add", "pizza margarita", 1, None)]),
    ("2 x pizza hawaiana", [("add", "pizza hawaiana", 2, None)]),
    (
        "Quiero dos cafés y tres medialunas",
        [("add", "cafés", 2, None), ("add", "medialunas", 3, None)],
    ),
    ("seis cervezas para hoy", [("add", "cervezas", 6, None)]),
    ("1,5 kilos de queso", [("add", "queso", 1.5, "kilos")]),
    ("doce rosas rojas", [("add", "rosas rojas", 12, None)]),
]
CHANGES = [
    ("mejor 3", [("set_quantity", "Producto A", 3, None)]),
    ("Mejor que sean tres", [("set_quantity", "Producto A", 3, None)]),
    ("cambia las manzanas a 4", [("set_quantity", "manzanas", 4, None)]),
    ("mejor 6 manzanas", [("set_quantity", "manzanas", 6, None)]),
    ("quita las manzanas", [("remove", "manzanas", None, None)]),
    ("Quítame el Producto A", [("remove", "Producto A", None, None)]),
    ("ya no quiero las manzanas", [("remove", "manzanas", None, None)]),
    ("elimina el Producto A por favor", [("remove", "Producto A", None, None)]),
    ("cinco en vez", [("set_quantity", "Producto A", 5, None)]),
    ("y dos botellas de agua", [("add", "agua", 2, "botellas")]),
]
