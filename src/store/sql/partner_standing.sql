select type = 'partner' and deleted_at is null as "active!", tokens_valid_after
from users where id = $1
