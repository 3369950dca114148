"""Indonesian: numbers in words ("dua belas"), units without "of" ("3 kotak apel"), changes
("ganti jadi 3", "4 aja") and removals ("hapus")."""

from wa_sessions.orders.models import OrderDetails, OrderItem

ORDER = OrderDetails(
    items=[
        OrderItem(name="apel", quantity=2, unit="kotak"),
        OrderItem(name="Produk A", quantity=5, unit="buah"),
    ]
)
ADDS = [
    ("Saya mau 3 kotak apel", [("add", "apel", 3, "kotak")]),
    ("Halo, saya pesan lima buah Produk A", [("add", "Produk A", 5, "buah")]),
    ("dua botol air mineral", [("add", "air mineral", 2, "botol")]),
    ("empat bungkus nasi goreng", [("add", "nasi goreng", 4, "bungkus")]),
    ("satu lusin telur", [("add", "telur", 12, None)]),
    ("setengah lusin donat", [("add", "donat", 6, None)]),
    ("satu martabak manis", [("add", "martabak manis", 1, None)]),
    ("enam porsi sate ayam", [("add", "sate ayam", 6, "porsi")]),
    ("tujuh kaleng soda", [("add", "soda", 7, "kaleng")]),
    ("delapan potong ayam goreng", [("add", "ayam goreng", 8, "potong")]),
    ("sembilan gelas es teh", [("add", "es teh", 9, "gelas")]),
    ("sepuluh bakso", [("add", "bakso", 10, None)]),
    ("sebelas roti bakar", [("add", "roti bakar", 11, None)]),
    ("dua belas mawar", [("add", "mawar", 12, None)]),
    ("dua puluh pempek", [("add", "pempek", 20, None)]),
    ("2 kg beras", [("add", "beras", 2, "kg")]),
    ("3 x mie ayam", [("add", "mie ayam", 3, None)]),
    ("dua kopi dan tiga roti", [("add", "kopi", 2, None), ("add", "roti", 3, None)]),
    ("empat gado-gado untuk besok", [("add", "gado-gado", 4, None)]),
    ("1,5 kg daging sapi", [("add", "daging sapi", 1.5, "kg")]),
    ("lima belas risol ya", [("add", "risol", 15, None)]),
]
CHANGES = [
    ("ganti jadi 3", [("set_quantity", "Produk A", 3, None)]),
    ("Ganti jadi empat bungkus ya", [("set_quantity", "Produk A", 4, "bungkus")]),
    ("4 aja", [("set_quantity", "Produk A", 4, None)]),
    ("ubah jadi enam", [("set_quantity", "Produk A", 6, None)]),
    ("ganti apel jadi 5", [("set_quantity", "apel", 5, None)]),
    ("hapus apel", [("remove", "apel", None, None)]),
    ("Tolong hapus apel dari pesanan saya", [("remove", "apel", None, None)]),
    ("batalkan Produk A", [("remove", "Produk A", None, None)]),
    ("gak jadi apel", [("remove", "apel", None, None)]),
    ("dan dua botol susu", [("add", "susu", 2, "botol")]),
]
