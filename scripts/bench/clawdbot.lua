#!/usr/bin/env sysbench
-- The Clawdbot workload of scripts/bench.sh: what the sales bot sends to its
-- database during WhatsApp chats, for one tenant (tenant 1), in the
-- proportions of a conversation. One sysbench event is one statement, so
-- sysbench's latency histogram is per statement.
--
-- --sql_form=bot  the bot's own SQL, sent through sqlguard, which scopes it
--                 to the bot's tenant (policies/clawdbot.toml);
-- --sql_form=app  the SQL a careful application would send itself to MariaDB
--                 (direct or through HAProxy): the same statements with the
--                 tenant conditions written in. It is exactly the text the
--                 guard forwards for the bot's statement (tests/bench_harness.rs
--                 checks this with `sysbench clawdbot.lua dump`), so every
--                 target asks MariaDB for the same work.
--
-- One conversation: greet, list products of a category, look prices up by
-- name, list again, another price, check the stock of one product, find the
-- customer by phone; then in 30% of conversations insert an order and confirm
-- it (UPDATE). That is 8 reads and 0.6 writes per conversation on average.
--
-- The rows named exist: scripts/bench/clawdbot-data.sql creates them with the
-- same formulas (products and customers below).

sysbench.cmdline.options = {
   sql_form = {"bot (through sqlguard) or app (direct, HAProxy)", "bot"},
   run_id = {"a number unique to this run; new order ids start with it", 1},
   products = {"products per tenant (scripts/bench/clawdbot-data.sql)", 500},
   customers = {"customers per tenant (scripts/bench/clawdbot-data.sql)", 2000},
   order_percent = {"percent of conversations that end in an order", 30},
}

-- The bot's tenant (scripts/bench/proxy.toml binds clawdbot to tenant 1).
local TENANT = 1

local WORDS = {"Montre", "Ecouteurs", "Chargeur", "Djellaba", "Sac a dos",
               "Enceinte", "Babouches", "Tapis"}
local CATEGORIES = {"Electronique", "Mode", "Maison", "Beaute"}
local CITIES = {"Casablanca", "Rabat", "Marrakech", "Tanger", "Fes", "Agadir"}

local function product_id(n)
   return string.format("b0000000-0000-4000-8000-%04d%08d", TENANT, n)
end

-- WORDS[1 + n % 8] in the data's ELT(1 + n % 8, ...).
local function product_name(n)
   return string.format("%s modele %d", WORDS[1 + n % 8], n)
end

local function customer_id(n)
   return TENANT * 100000 + n
end

local function customer_phone(n)
   return string.format("+2126%02d%05d", TENANT, n)
end

-- Each statement as the bot writes it and as the app writes it. The app's
-- form is the guard's rewrite: the bot's WHERE in parentheses, then
-- `AND <table>.tenant_id = 1`; an INSERT gets the tenant column and a lookup
-- that the customer is the tenant's own.

local function product_list(form, category)
   local where = string.format("status = 'active' AND category = '%s'", category)
   if form == "app" then
      where = string.format("(%s) AND products.tenant_id = %d", where, TENANT)
   end
   return "SELECT id, name, price, stock FROM products WHERE " .. where .. " LIMIT 10"
end

local function price_lookup(form, name)
   local where = string.format("name LIKE '%%%s%%'", name)
   if form == "app" then
      where = string.format("(%s) AND products.tenant_id = %d", where, TENANT)
   end
   return "SELECT name, price, compare_at_price FROM products WHERE " .. where .. " LIMIT 5"
end

local function stock_check(form, id)
   local where = string.format("id = '%s'", id)
   if form == "app" then
      where = string.format("(%s) AND products.tenant_id = %d", where, TENANT)
   end
   return "SELECT stock FROM products WHERE " .. where .. " LIMIT 1"
end

local function customer_lookup(form, phone)
   local where = string.format("phone = '%s'", phone)
   if form == "app" then
      where = string.format("(%s) AND customers.tenant_id = %d", where, TENANT)
   end
   return "SELECT id, phone, social_handle, notes FROM customers WHERE " .. where .. " LIMIT 1"
end

local function order_insert(form, order_id, customer, product, city)
   local price = 50 + (product * 37) % 950
   local customer_value = tostring(customer_id(customer))
   local columns = "id, customer_id, product_data, total_price, status, source_platform, " ..
      "customer_name, customer_phone, address, city"
   local tail = ""
   if form == "app" then
      customer_value = string.format(
         "(SELECT customers.id FROM customers WHERE customers.tenant_id = %d AND (customers.id = (%s)))",
         TENANT, customer_value)
      columns = columns .. ", tenant_id"
      tail = string.format(", %d", TENANT)
   end
   return string.format(
      "INSERT INTO orders (%s) VALUES ('%s', %s, " ..
      "'[{\"product_id\": \"%s\", \"quantity\": 1, \"price\": %d.00}]', %d.00, 'En attente', " ..
      "'whatsapp', 'Client %d', '%s', '%d Rue Ibnou Mounir', '%s'%s)",
      columns, order_id, customer_value, product_id(product), price, price,
      customer, customer_phone(customer), 1 + customer % 120, city, tail)
end

local function order_confirm(form, order_id, city)
   local where = string.format("id = '%s'", order_id)
   if form == "app" then
      where = string.format("(%s) AND orders.tenant_id = %d", where, TENANT)
   end
   return string.format(
      "UPDATE orders SET status = 'Confirme', address = '7 Avenue Hassan II', city = '%s' WHERE %s",
      city, where)
end

-- sysbench's generator while running; cmd_dump swaps in a seeded one
-- (sysbench does not seed the main thread's generator from --rand-seed).
local rand = function(a, b) return sysbench.rand.uniform(a, b) end

local function pick(list)
   return list[rand(1, #list)]
end

-- Order ids: unique per run (run_id), thread and order, and valid UUIDs
-- (policies/clawdbot.toml types orders.id as a UUID).
local orders_placed = 0

local function new_order_id()
   orders_placed = orders_placed + 1
   return string.format("c%07x-%04x-4000-8000-%012x",
                        sysbench.opt.run_id % 0x10000000,
                        (sysbench.tid or 0) % 0x10000, orders_placed)
end

-- The statements of one conversation, in order.
local function conversation(form)
   local p = sysbench.opt.products
   local steps = {}
   local function add(sql) steps[#steps + 1] = sql end
   local function some_product() return rand(1, p) end
   add(product_list(form, pick(CATEGORIES)))
   add(price_lookup(form, product_name(some_product())))
   add(product_list(form, pick(CATEGORIES)))
   add(price_lookup(form, product_name(some_product())))
   add(product_list(form, pick(CATEGORIES)))
   add(price_lookup(form, product_name(some_product())))
   local wanted = some_product()
   add(stock_check(form, product_id(wanted)))
   local customer = rand(1, sysbench.opt.customers)
   add(customer_lookup(form, customer_phone(customer)))
   if rand(1, 100) <= sysbench.opt.order_percent then
      local order_id = new_order_id()
      local city = pick(CITIES)
      add(order_insert(form, order_id, customer, wanted, city))
      add(order_confirm(form, order_id, city))
   end
   return steps
end

local function check_form()
   local form = sysbench.opt.sql_form
   if form ~= "bot" and form ~= "app" then
      error("--sql_form must be bot or app, not " .. tostring(form))
   end
   return form
end

local steps, next_step

function thread_init()
   check_form()
   drv = sysbench.sql.driver()
   con = drv:connect()
   steps, next_step = {}, 1
end

function event()
   if next_step > #steps then
      steps, next_step = conversation(sysbench.opt.sql_form), 1
   end
   -- A failed statement raises a Lua error: sysbench stops and exits non-zero
   -- (scripts/bench.sh runs it with --mysql-ignore-errors=none).
   con:query(steps[next_step])
   next_step = next_step + 1
end

function thread_done()
   con:disconnect()
end

-- `sysbench clawdbot.lua --sql_form=bot|app dump`: prints the statements of
-- 20 conversations, one per line, without a database, the same ones for
-- both forms (for tests/bench_harness.rs, which checks that the guard turns
-- each bot line into the app line).
function cmd_dump()
   local form = check_form()
   -- Park-Miller: exact in LuaJIT's doubles (state * 16807 < 2^53).
   local state = 20240611
   rand = function(a, b)
      state = (state * 16807) % 2147483647
      return a + state % (b - a + 1)
   end
   for _ = 1, 20 do
      for _, sql in ipairs(conversation(form)) do
         print(sql)
      end
   end
end

sysbench.cmdline.commands = {
   dump = {cmd_dump},
}
