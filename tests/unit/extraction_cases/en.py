"""English: the phrasings the extractor has always read, as a table like the other languages'."""

from wa_sessions.orders.models import OrderDetails, OrderItem

ORDER = OrderDetails(
    items=[
        OrderItem(name="apples", quantity=2, unit="boxes"),
        OrderItem(name="Product A", quantity=5, unit="units"),
    ]
)
ADDS = [
    ("I need 5 units of Product A", [("add", "Product A", 5, "units")]),
    ("I need five units of Product A", [("add", "Product A", 5, "units")]),
    ("two pizzas please", [("add", "pizzas", 2, None)]),
    ("3 boxes of apples", [("add", "apples", 3, "boxes")]),
    ("can I get a dozen eggs", [("add", "eggs", 12, None)]),
    ("half a dozen bagels", [("add", "bagels", 6, None)]),
    ("one cheeseburger", [("add", "cheeseburger", 1, None)]),
    ("4 bottles of water", [("add", "water", 4, "bottles")]),
    ("seven cans of soda", [("add", "soda", 7, "cans")]),
    ("eight slices of ham", [("add", "ham", 8, "slices")]),
    ("nine donuts", [("add", "donuts", 9, None)]),
    ("ten bags of ice", [("add", "ice", 10, "bags")]),
    ("eleven cupcakes", [("add", "cupcakes", 11, None)]),
    ("twelve roses", [("add", "roses", 12, None)]),
    ("twenty wings", [("add", "wings", 20, None)]),
    ("2 kg of potatoes", [("add", "potatoes", 2, "kg")]),
    ("3 x Margherita pizza", [("add", "Margherita pizza", 3, None)]),
    ("two coffees and three muffins", [("add", "coffees", 2, None), ("add", "muffins", 3, None)]),
    ("four bagels for tomorrow", [("add", "bagels", 4, None)]),
    ("1.5 kg of cheese", [("add", "cheese", 1.5, "kg")]),
    ("fifteen beers thanks", [("add", "beers", 15, None)]),
]
CHANGES = [
    ("make it 3", [("set_quantity", "Product A", 3, None)]),
    ("make that three", [("set_quantity", "Product A", 3, None)]),
    ("actually 4", [("set_quantity", "Product A", 4, None)]),
    ("6 instead", [("set_quantity", "Product A", 6, None)]),
    ("change the apples to 5", [("set_quantity", "apples", 5, None)]),
    ("remove the apples", [("remove", "apples", None, None)]),
    ("please remove the apples from my order", [("remove", "apples", None, None)]),
    ("delete Product A", [("remove", "Product A", None, None)]),
    ("I don't want the apples", [("remove", "apples", None, None)]),
    ("and two bottles of milk", [("add", "milk", 2, "bottles")]),
]
